"""Read a checkpoint one way, and find the one a work dir offers.

:func:`read_checkpoint` is the project's only checkpoint reader: every module and tool calls it, and
``granvit_mm.engine.checkpoint_io`` registers it as MMEngine's ``CheckpointLoader`` scheme for local paths, so
``load_from``, ``--resume`` and ``Pretrained`` inits read through it too. It is weights-only (torch's safe
unpickler) unless the caller passes ``trusted=True`` (``--trust-checkpoint`` on the command line), the one
opt-in for full unpickling, which can run code a crafted file carries. A file that needs more than tensors
raises :class:`UnsafeCheckpointError`, which says what to run. Our own checkpoints
(``WeightsOnlyCheckpointHook``, the converters) always load safely.

:func:`find_checkpoint` is the only work-dir resolver (``tools/train.py --resume``, the inference API, the
fault report) and :func:`checkpoint_iteration` the only iteration-number parser.
"""
import glob
import json
import os
import os.path as osp
import pickle
from typing import Any, Optional

import torch

__all__ = ['UnsafeCheckpointError', 'SAFE_CONVERTER', 'read_checkpoint', 'read_hf_config', 'is_loadable',
           'is_complete_dir', 'checkpoint_iteration', 'find_checkpoint']

SAFE_CONVERTER = 'tools/model_converters/mmengine_to_safe_checkpoint.py'
HF_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin')


class UnsafeCheckpointError(RuntimeError, ValueError):
    """A checkpoint that only full unpickling reads; the message says what to run instead."""


def _unsafe_message(path: str, err: Exception) -> str:
    return (f'{path}: torch refuses to load safely (weights_only=True): {str(err).splitlines()[0]}. '
            f'A plain MMEngine checkpoint converts once into one that loads safely: python {SAFE_CONVERTER} '
            f'{path} SAFE.pth. Only for a file whose origin you trust: pass trusted=True (--trust-checkpoint '
            'on the command line), which unpickles it in full and can run code in it.')


def read_checkpoint(path: str, trusted: bool = False, map_location: Any = 'cpu', mmap: bool = False) -> Any:
    """What a checkpoint holds, loaded weights-only unless ``trusted``.

    ``path`` is a ``.pth``/``.bin`` file, a ``.safetensors`` file, a Hugging Face model directory (its
    ``model.safetensors``, sharded safetensors or ``pytorch_model.bin``: a state dict), or, with ``trusted``
    only, a DeepSpeed checkpoint directory (read as XTuner does). ``mmap`` memory-maps zip files (legacy
    files are read whole).
    """
    path = osp.expanduser(str(path))
    if osp.isdir(path):
        return _read_dir(path, trusted)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    if trusted:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        if mmap:
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped: read whole below
                pass
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(_unsafe_message(path, err)) from None


def _read_dir(path: str, trusted: bool) -> dict:
    files = set(os.listdir(path))
    if 'model.safetensors' in files:
        return read_checkpoint(osp.join(path, 'model.safetensors'))
    if 'model.safetensors.index.json' in files:
        with open(osp.join(path, 'model.safetensors.index.json'), encoding='utf-8') as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        state = {}
        for shard in shards:
            state.update(read_checkpoint(osp.join(path, shard)))
        return state
    if 'pytorch_model.bin' in files:
        return read_checkpoint(osp.join(path, 'pytorch_model.bin'), trusted)
    if not trusted:
        raise UnsafeCheckpointError(
            f'{path} is a directory without {" / ".join(HF_WEIGHT_FILES)}: a DeepSpeed checkpoint '
            'directory, which only full unpickling (weights_only=False) reads. Pass trusted=True '
            '(--trust-checkpoint) if you trust it.')
    from xtuner.model.utils import guess_load_checkpoint
    return guess_load_checkpoint(path)


def read_hf_config(path: str) -> dict:
    """``config.json`` of a Hugging Face model directory ({} when it has none)."""
    file = osp.join(path, 'config.json')
    if not osp.isfile(file):
        return {}
    with open(file, encoding='utf-8') as f:
        return json.load(f)


def is_loadable(path: str) -> bool:
    """Whether ``path`` is a complete file that :func:`read_checkpoint` reads safely (memory-mapped: a zip
    file is not read whole; a legacy, non-zip file is, as :func:`read_checkpoint` reads it)."""
    if not osp.isfile(path):
        return False
    try:
        read_checkpoint(path, mmap=True)
    except Exception:  # noqa: BLE001 -- truncated, not a checkpoint, not weights-only: not a candidate
        return False
    return True


def is_complete_dir(path: str) -> bool:
    """Whether ``path`` is a checkpoint directory a strategy finished writing (DeepSpeed: model states; FSDP
    local state dicts: rank files). Written by ``granvit_mm.engine.checkpoint_io`` under a temp name and
    renamed when complete, so the final name alone says it; this guards directories from elsewhere."""
    return bool(glob.glob(osp.join(path, '*model_states.pt')) or glob.glob(osp.join(path, 'rank*.pth')))


def checkpoint_iteration(path: str) -> int:
    """The number a checkpoint name ends with (``iter_1000.pth`` -> 1000, ``best_x_iter_5.pth`` -> 5), or
    -1."""
    stem = osp.basename(osp.normpath(path))
    stem = stem[:-len('.pth')] if stem.endswith('.pth') else stem
    digits = len(stem) - len(stem.rstrip('0123456789'))
    return int(stem[-digits:]) if digits else -1


def _usable(path: str, check: bool) -> bool:
    if osp.isdir(path):
        return is_complete_dir(path)
    return osp.isfile(path) and (not check or is_loadable(path))


def _newest(paths, check: bool) -> Optional[str]:
    ranked = sorted(paths, key=lambda p: (checkpoint_iteration(p), osp.getmtime(p)), reverse=True)
    return next((p for p in ranked if _usable(p, check)), None)


def find_checkpoint(work_dir: str, prefer: str = 'last', check: bool = True) -> Optional[str]:
    """The checkpoint a work dir offers, or None.

    ``prefer='last'`` (``--resume``): the one ``last_checkpoint`` names (also when the work dir was moved:
    the same file name in ``work_dir``), else the newest ``iter_*`` / ``epoch_*``. ``prefer='best'``
    (inference): the newest ``best_*.pth`` first, and any ``*.pth`` as the last resort. ``check`` skips
    files torch's safe loader does not read (a kill can leave ``last_checkpoint`` empty; a file from
    elsewhere can be truncated).
    """
    if prefer not in ('last', 'best'):
        raise ValueError(f"prefer must be 'last' or 'best', got {prefer!r}")
    if not osp.isdir(work_dir):
        return None
    if prefer == 'best':
        best = _newest(glob.glob(osp.join(work_dir, 'best_*.pth')), check)
        if best:
            return best
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer, encoding='utf-8') as f:
            named = f.read().strip()
        for candidate in (named, osp.join(work_dir, osp.basename(named))) if named else ():
            if _usable(candidate, check):
                return candidate
    numbered = glob.glob(osp.join(work_dir, 'iter_*.pth')) + glob.glob(osp.join(work_dir, 'epoch_*.pth'))
    found = _newest(numbered, check)
    if found is None and prefer == 'best':
        found = _newest(glob.glob(osp.join(work_dir, '*.pth')), check)
    return found
