"""Read a checkpoint for inference and find the one a work dir offers, through the project's one reader
(``granvit_mm.core.checkpoint_reader``: weights-only, the same error everywhere).

Our training checkpoints are saved weights-only-safe (``WeightsOnlyCheckpointHook``), converter outputs hold
only tensors and plain values, so nothing here ever unpickles arbitrary objects.
"""
import os.path as osp
from typing import Optional

from granvit_mm.core import checkpoint_reader
from granvit_mm.core.paths import MissingPathError, check_path

CKPT_HINT = ('Train one (`make demo` writes work_dirs/granvit_pretrain_tiny/) or pass the path of a stage-1 '
             'checkpoint (tools/train.py) or of a converted SigLIP2 checkpoint '
             '(tools/model_converters/siglip2_to_granvit.py).')


def load_checkpoint_dict(path: str) -> dict:
    """The checkpoint's top-level dict; refuses files that need unsafe unpickling, saying why."""
    path = check_path(path, 'The checkpoint', CKPT_HINT)
    if osp.isdir(path):
        path = find_checkpoint(path)
    obj = checkpoint_reader.read_checkpoint(path)
    if not isinstance(obj, dict):
        raise ValueError(f'{path} is not a checkpoint dict (got {type(obj).__name__})')
    return obj


def find_checkpoint(work_dir: str, prefer: str = 'best') -> str:
    """A work dir's checkpoint: ``best_*.pth`` (prefer='best'), else the one ``last_checkpoint`` names, else
    the highest ``iter_*``/``epoch_*``."""
    if not osp.isdir(work_dir):
        raise MissingPathError(f'checkpoint folder {work_dir!r} not found. {CKPT_HINT}')
    found = checkpoint_reader.find_checkpoint(work_dir, prefer=prefer, check=False)
    if found is None:
        raise MissingPathError(f'no .pth checkpoint in {work_dir!r}. {CKPT_HINT}')
    return found


def resolve_checkpoint(path: Optional[str]) -> str:
    """A .pth file as is; a folder -> :func:`find_checkpoint`."""
    path = check_path(path, 'The checkpoint', CKPT_HINT)
    return find_checkpoint(path) if osp.isdir(path) else path
