"""GranViT stage-1 checkpoint -> the Hugging Face pieces stage 2 and the LLaVA export are built from.

A stage-1 checkpoint holds ``backbone.*`` (the student ViT), ``teacher.module.*`` (its EMA teacher),
``projector.*`` (the 2-layer MLP) and, in ``meta['cfg']``, the config that built them. This module turns them
into a ``SiglipVisionModel`` whose ``hidden_states[visual_layer]`` are the stage-1 visual tokens
(:mod:`granvit_mm.core.visual_tokens`), an XTuner ``ProjectorModel`` with the stage-1 projector weights, and
the image processor of stage 1. ``tools/model_converters/granvit_to_hf.py`` writes them to a directory.

Stage 1 trains without the final LayerNorm (it is not part of the visual tokens), but ``SiglipVisionModel``
always has a ``post_layernorm``; the export gives it the identity affine (weight 1, bias 0). It affects only
``last_hidden_state``/``pooler_output``, which neither LLaVA path reads.
"""
import os.path as osp
from typing import Dict, Mapping, Optional, Tuple

import torch

from granvit_mm.core.checkpoint_layout import (PROJECTOR_PREFIX, STAGE1_VIT_PREFIXES, split_checkpoint,
                                               strip_prefix)
from granvit_mm.core.checkpoint_reader import read_checkpoint
from granvit_mm.core.siglip_keys import granvit_to_siglip_vision
from granvit_mm.core.visual_tokens import DEFAULT_VISUAL_LAYER, check_layer, granvit_token_kwargs

# Where each ViT of a stage-1 checkpoint lives.
VISUAL_LAYER_KEY = 'granvit_visual_layer'  # recorded in the exported SiglipVisionConfig


def read_stage1_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """(state_dict, meta) of a local checkpoint, weights-only (stage-1 checkpoints written with
    granvit.WeightsOnlyCheckpointHook, the default runtime, are)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise TypeError(f'{path} holds a {type(ckpt).__name__}, not a state dict')
    return split_checkpoint(ckpt)


def vit_state(state: Mapping[str, torch.Tensor], which: str = 'student') -> Dict[str, torch.Tensor]:
    """The GranViT weights of ``which`` ViT; a bare GranViT state dict (converter output) is taken as is."""
    if which not in STAGE1_VIT_PREFIXES:
        raise ValueError(f'which must be one of {sorted(STAGE1_VIT_PREFIXES)}, got {which!r}')
    prefix = STAGE1_VIT_PREFIXES[which]
    out = strip_prefix(state, prefix)
    if out:
        return out
    if 'patch_embed.weight' in state:
        return dict(state)
    found = [w for w, p in STAGE1_VIT_PREFIXES.items() if any(k.startswith(p) for k in state)]
    raise KeyError(f'no {which} ViT ({prefix}*) in the checkpoint' + (f'; it has: {found}' if found else ''))


def projector_state(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """The stage-1 projector (``model.0``/``model.2`` Linear layers, XTuner's layout), or None."""
    return strip_prefix(state, PROJECTOR_PREFIX) or None


def stage1_model_cfg(meta: Mapping, config: Optional[str] = None) -> dict:
    """The stage-1 ``model`` config: from ``config`` (a file) if given, else from the checkpoint's meta."""
    from mmengine.config import Config
    if config:
        cfg = Config.fromfile(config)
    elif meta.get('cfg'):
        cfg = Config.fromstring(meta['cfg'], '.py')
    else:
        raise ValueError('the checkpoint carries no config (meta["cfg"]); pass the stage-1 config file')
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)


def build_granvit(backbone_cfg: Mapping, visual_layer: int = DEFAULT_VISUAL_LAYER):
    """The stage-1 GranViT (no init checkpoint, no gradient checkpointing) with the visual-token settings."""
    from granvit_mm.models.backbones import GranViT
    cfg = dict(backbone_cfg)
    kind = str(cfg.pop('type', 'GranViT')).split('.')[-1]
    if kind != 'GranViT':
        raise ValueError(f'the stage-1 backbone is {kind}, not GranViT')
    for key in ('init_cfg', 'with_cp', 'out_type', 'drop_path_rate', 'frozen_stages'):
        cfg.pop(key, None)
    cfg.update(granvit_token_kwargs(visual_layer))
    return GranViT(**cfg, out_type='raw').eval()


def siglip_vision_config(vit, visual_layer: int = DEFAULT_VISUAL_LAYER):
    """``SiglipVisionConfig`` of a GranViT (global attention, square native grid, tanh-GELU)."""
    from transformers import SiglipVisionConfig
    if any(layer.window_size for layer in vit.layers):
        raise ValueError('windowed-attention GranViTs (window_size > 0) have no SiglipVisionModel equivalent')
    if vit.img_size[0] != vit.img_size[1]:
        raise ValueError(f'SiglipVisionModel needs a square input, GranViT img_size is {vit.img_size}')
    return SiglipVisionConfig(
        hidden_size=vit.embed_dims,
        intermediate_size=vit.arch_settings['feedforward_channels'],
        num_hidden_layers=vit.num_layers,
        num_attention_heads=vit.arch_settings['num_heads'],
        num_channels=vit.patch_embed.in_channels,
        image_size=vit.img_size[0],
        patch_size=vit.patch_size,
        hidden_act='gelu_pytorch_tanh',
        layer_norm_eps=vit.layers[0].ln1.eps,
        vision_use_head=False,
        **{VISUAL_LAYER_KEY: check_layer(visual_layer)})


def to_siglip_vision_model(vit, visual_layer: int = DEFAULT_VISUAL_LAYER):
    """A ``SiglipVisionModel`` computing the GranViT's blocks exactly (fp32); identity ``post_layernorm``."""
    from transformers import SiglipVisionModel
    state = {k: v.detach().float() for k, v in vit.state_dict().items()}
    state.setdefault('norm.weight', torch.ones(vit.embed_dims))
    state.setdefault('norm.bias', torch.zeros(vit.embed_dims))
    model = SiglipVisionModel(siglip_vision_config(vit, visual_layer))
    model.load_state_dict(granvit_to_siglip_vision(state), strict=True)
    return model.eval()


def to_projector_model(state: Mapping[str, torch.Tensor]):
    """XTuner's ``ProjectorModel`` (depth 2, GELU) holding the stage-1 projector weights."""
    from xtuner.model.modules import ProjectorConfig, ProjectorModel
    first, last = state['model.0.weight'], state['model.2.weight']
    config = ProjectorConfig(visual_hidden_size=first.shape[1], llm_hidden_size=last.shape[0], depth=2,
                             bias='model.0.bias' in state)
    model = ProjectorModel(config)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def load_projector_weights(path: str) -> Dict[str, torch.Tensor]:
    """Projector weights from an exported ``projector/`` directory or a stage-1 checkpoint (.pth)."""
    if osp.isdir(path):
        return read_checkpoint(path)
    state, _ = read_stage1_checkpoint(path)
    proj = projector_state(state)
    if proj is None:
        raise KeyError(f'{path} has no projector.* weights')
    return proj


def export_encoder(checkpoint: Optional[str], out_dir: str, which: str = 'student',
                   config: Optional[str] = None, from_init: bool = False) -> dict:
    """Write ``out_dir``: the SigLIP tower, the image processor, ``projector/`` (if any). Returns a summary.

    ``from_init`` exports the ViT that stage 1 *starts* from instead (the config's init checkpoint, e.g.
    SigLIP2, or its seeded random init), the baseline stage 2 is compared against; it has no projector.
    """
    from .image_processor import GranViTImageProcessor
    state, meta = read_stage1_checkpoint(checkpoint) if checkpoint else ({}, {})
    model_cfg = stage1_model_cfg(meta, config)
    layer = model_cfg.get('visual_layer', DEFAULT_VISUAL_LAYER)
    proj = None
    if from_init:
        vit = _initial_vit(model_cfg, config, meta, layer)
    else:
        vit = build_granvit(model_cfg['backbone'], layer)
        weights = vit_state(state, which)
        if 'norm.weight' in weights:
            raise ValueError(
                'this checkpoint has a final LayerNorm (backbone.norm.*): it was trained with post-norm '
                'visual tokens, before the visual-token contract (granvit_mm/core/visual_tokens.py); an '
                'export would feed the projector other tokens than it learned. Retrain stage 1 with the '
                'current configs.')
        vit.load_state_dict(weights, strict=True)
        proj = projector_state(state)
    tower = to_siglip_vision_model(vit, layer)
    tower.save_pretrained(out_dir)
    GranViTImageProcessor.register_for_auto_class('AutoImageProcessor')
    GranViTImageProcessor(size=vit.img_size[0]).save_pretrained(out_dir)
    if proj is not None:
        to_projector_model(proj).save_pretrained(osp.join(out_dir, 'projector'))
    return dict(which='init' if from_init else which, visual_layer=layer, image_size=vit.img_size[0],
                patch_size=vit.patch_size, hidden_size=vit.embed_dims, projector=proj is not None)


def _initial_vit(model_cfg: dict, config: Optional[str], meta: Mapping, layer: int):
    """The student as stage 1 initialises it: its init_cfg checkpoint, or the config's seeded random init."""
    from mmengine.config import Config
    from mmengine.runner import set_random_seed
    cfg = Config.fromfile(config) if config else Config.fromstring(meta['cfg'], '.py')
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is not None:
        set_random_seed(seed)
    from granvit_mm.models.backbones import GranViT
    backbone = dict(model_cfg['backbone'])
    backbone.pop('type', None)
    backbone.pop('with_cp', None)
    backbone.update(granvit_token_kwargs(layer), out_type='raw')
    vit = GranViT(**backbone)
    vit.init_weights()
    return vit.eval()
