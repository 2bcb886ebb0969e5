"""Refuse a ``Pretrained`` init that would silently leave a GranViT at random weights.

MMEngine's ``PretrainedInit`` loads with ``strict=False`` and only warns: a stage-1 checkpoint (keys
``backbone.*`` / ``teacher.module.*``) given without ``prefix`` loads nothing, and a checkpoint of another
patch size or width is skipped key by key, and training starts from random weights with exit code 0. This
check runs before that load and stops with what to set.
"""
import os
from typing import Dict, List, Mapping, Optional, Union

import torch

from granvit_mm.core.checkpoint_layout import STAGE1_VIT_PREFIXES, split_checkpoint, strip_prefix
from granvit_mm.core.checkpoint_reader import read_checkpoint

# Where a GranViT lives inside the checkpoints this project writes: prefix -> what it is.
KNOWN_PREFIXES = {
    STAGE1_VIT_PREFIXES['student']: 'the stage-1 student (or a downstream model\'s backbone)',
    STAGE1_VIT_PREFIXES['teacher']: 'the stage-1 EMA teacher',
}


class PretrainedMismatchError(ValueError):
    """A Pretrained checkpoint does not fit the GranViT it is meant to initialise."""


def pretrained_cfg(init_cfg: Optional[Union[dict, list]]) -> Optional[dict]:
    """The ``Pretrained`` entry of an init_cfg (dict or list), or None."""
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    return next((c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained'), None)


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a local checkpoint, memory-mapped when possible; safe loading stays on."""
    return split_checkpoint(read_checkpoint(path, mmap=True))[0]


def _prefix_hint(keys: List[str], path: str) -> str:
    found = [p for p in KNOWN_PREFIXES if any(k.startswith(p + 'patch_embed.') for k in keys)]
    if found:
        options = '; '.join(f"prefix='{p}' for {KNOWN_PREFIXES[p]}" for p in found)
        return (f'{path} holds a GranViT under a prefix: add it to the init_cfg, e.g. '
                f"init_cfg=dict(type='Pretrained', checkpoint='{path}', prefix='{found[0]}') ({options}).")
    sample = ', '.join(sorted(keys)[:5])
    return (f'{path} has no GranViT keys (first keys: {sample}). Convert a Hugging Face SigLIP/SigLIP2 tower '
            'with tools/model_converters/siglip2_to_granvit.py, or set `prefix` to where the ViT lives.')


def check_pretrained_fits(model_state: Mapping[str, torch.Tensor], ckpt_state: Mapping[str, torch.Tensor],
                          path: str, prefix: Optional[str] = None) -> None:
    """Raise PretrainedMismatchError unless every GranViT weight is in the checkpoint with its shape.

    ``pos_embed`` may differ in length (it is resized on load); extra checkpoint keys are fine.
    """
    keys = list(ckpt_state)
    if prefix:
        ckpt_state = strip_prefix(ckpt_state, prefix)
        if not ckpt_state:
            raise PretrainedMismatchError(f"no key of {path} starts with prefix='{prefix}'. "
                                          + _prefix_hint(keys, path))
    missing = [k for k in model_state if k not in ckpt_state]
    if len(missing) == len(model_state):
        raise PretrainedMismatchError(f'none of the GranViT weights is in {path}. '
                                      + _prefix_hint(keys, path))
    shapes = [f'{k}: checkpoint {tuple(ckpt_state[k].shape)} vs model {tuple(v.shape)}'
              for k, v in model_state.items()
              if k in ckpt_state and k != 'pos_embed' and ckpt_state[k].shape != v.shape]
    if shapes:
        raise PretrainedMismatchError(
            f'{path} does not fit this GranViT ({"; ".join(shapes[:3])}). Set the backbone\'s arch, '
            'patch_size and final_norm to the checkpoint\'s (tools/model_converters/siglip2_to_granvit.py '
            'prints them for a converted tower).')
    if missing:
        raise PretrainedMismatchError(f'{path} lacks {len(missing)} GranViT weights '
                                      f'({", ".join(missing[:4])}); they would stay random. Check arch '
                                      '(num_layers) and final_norm.')


def check_pretrained_init(module: torch.nn.Module, init_cfg: Optional[Union[dict, list]]) -> None:
    """Check a local ``Pretrained`` init_cfg against ``module`` (remote URLs are left to MMEngine)."""
    cfg = pretrained_cfg(init_cfg)
    if cfg is None or not cfg.get('checkpoint') or '://' in str(cfg['checkpoint']):
        return
    path = os.path.expanduser(str(cfg['checkpoint']))
    if not os.path.isfile(path):
        return  # MMEngine (or the algorithm's own path check) reports a missing file
    check_pretrained_fits(module.state_dict(), read_state_dict(path), path, cfg.get('prefix'))
