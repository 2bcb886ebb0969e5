"""Read checkpoints safely (``torch.load(weights_only=True)``) and find the one a work dir offers.

Our training checkpoints are saved weights-only-safe (``WeightsOnlyCheckpointHook``), converter outputs hold
only tensors and plain values, so nothing here ever unpickles arbitrary objects.
"""
import glob
import os.path as osp
import pickle
import re
from typing import Optional

import torch

from granvit_mm.core.paths import MissingPathError, check_path

CKPT_HINT = ('Train one (`make demo` writes work_dirs/granvit_pretrain_tiny/) or pass the path of a stage-1 '
             'checkpoint (tools/train.py) or of a converted SigLIP2 checkpoint '
             '(tools/model_converters/siglip2_to_granvit.py).')


def load_checkpoint_dict(path: str) -> dict:
    """The checkpoint's top-level dict; refuses files that need unsafe unpickling, saying why."""
    path = check_path(path, 'The checkpoint', CKPT_HINT)
    if osp.isdir(path):
        path = find_checkpoint(path)
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f'{path} holds objects that torch refuses to load safely (weights_only=True): '
                         f'{e}. Checkpoints from tools/train.py with WeightsOnlyCheckpointHook load safely; '
                         'for another checkpoint you trust, re-save only its weights: '
                         "torch.save({'state_dict': "
                         "torch.load(P, weights_only=False)['state_dict']}, P2)") from None
    if not isinstance(obj, dict):
        raise ValueError(f'{path} is not a checkpoint dict (got {type(obj).__name__})')
    return obj


def _iter_number(path: str) -> int:
    match = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(match.group(1)) if match else -1


def find_checkpoint(work_dir: str, prefer: str = 'best') -> str:
    """A work dir's checkpoint: ``best_*.pth`` (prefer='best'), else the one ``last_checkpoint`` names, else
    the highest ``iter_*``/``epoch_*``."""
    if not osp.isdir(work_dir):
        raise MissingPathError(f'checkpoint folder {work_dir!r} not found. {CKPT_HINT}')
    best = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')), key=_iter_number)
    if prefer == 'best' and best:
        return best[-1]
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last, encoding='utf-8') as f:
            named = f.read().strip()
        for candidate in (named, osp.join(work_dir, osp.basename(named))):
            if candidate and osp.isfile(candidate):
                return candidate
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=_iter_number)
    if not found:
        raise MissingPathError(f'no .pth checkpoint in {work_dir!r}. {CKPT_HINT}')
    return found[-1]


def resolve_checkpoint(path: Optional[str]) -> str:
    """A .pth file as is; a folder -> :func:`find_checkpoint`."""
    path = check_path(path, 'The checkpoint', CKPT_HINT)
    return find_checkpoint(path) if osp.isdir(path) else path
