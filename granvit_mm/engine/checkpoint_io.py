"""Crash-safe checkpoint files: a write is all or nothing, and an old checkpoint goes only after a new one landed.

MMEngine's ``LocalBackend.put`` opens the final path and writes into it, so a SIGKILL (or a full disk) while
saving leaves a truncated ``iter_N.pth`` under the final name. ``CheckpointHook`` also deletes the checkpoint
beyond ``max_keep_ckpts`` (and the previous best) *before* it saves the new one, so a failed save loses it.

:class:`AtomicLocalBackend` fixes both without touching MMEngine: ``put`` writes a hidden temp file in the same
folder, fsyncs it and ``os.replace``-s it onto the final name (atomic on POSIX); ``remove`` only moves a file
aside, and the files moved aside are deleted after the next successful ``put`` or moved back when it fails.
``WeightsOnlyCheckpointHook`` installs it on the run's ``CheckpointHook``. ``last_checkpoint`` is written by
MMEngine after the checkpoint, so it only ever names a complete file; :func:`latest_checkpoint` (used by
``tools/train.py --resume``) also survives a ``last_checkpoint`` that a kill left empty.
"""
import errno
import glob
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Union
from pathlib import Path

import torch
from mmengine.fileio import LocalBackend, register_backend

__all__ = ['AtomicLocalBackend', 'CheckpointSaveError', 'ATOMIC_BACKEND', 'latest_checkpoint', 'is_loadable']

ATOMIC_BACKEND = 'granvit_atomic_local'
_TMP_TAG = '.granvit-tmp-'
_REMOVED_TAG = '.granvit-removed'
# folder -> [(moved-aside path, original path)]: shared by the backend instances MMEngine creates per call
_PENDING: Dict[str, List[tuple]] = {}


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the message says why and which earlier checkpoint is intact."""


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hidden(path: str, tag: str) -> str:
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}{tag}')


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put`` is atomic and whose ``remove`` is undone if the next ``put`` fails."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        filepath = str(filepath)
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        tmp = _hidden(filepath, f'{_TMP_TAG}{os.getpid()}')
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except OSError as err:
            if osp.exists(tmp):
                os.unlink(tmp)
            restored = self._restore_removed(folder)
            raise CheckpointSaveError(err.errno, _save_error(filepath, err, folder, restored)) from err
        _fsync_dir(folder)
        self._drop_removed(folder)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)

    def remove(self, filepath: Union[str, Path]) -> None:
        filepath = str(filepath)
        aside = _hidden(filepath, _REMOVED_TAG)
        os.replace(filepath, aside)
        _PENDING.setdefault(osp.dirname(osp.abspath(filepath)), []).append((aside, filepath))

    @staticmethod
    def _restore_removed(folder: str) -> List[str]:
        restored = []
        for aside, original in reversed(_PENDING.pop(folder, [])):
            if osp.exists(aside) and not osp.exists(original):
                os.replace(aside, original)
                restored.append(original)
        return restored

    @staticmethod
    def _drop_removed(folder: str) -> None:
        for aside, _ in _PENDING.pop(folder, []):
            if osp.exists(aside):
                os.unlink(aside)
        # files a killed run had moved aside or half-written: never picked up, only taking space
        for stale in glob.glob(osp.join(folder, f'.*{_REMOVED_TAG}')) + glob.glob(osp.join(folder, f'.*{_TMP_TAG}*')):
            pid = stale.rsplit(_TMP_TAG, 1)[-1] if _TMP_TAG in stale else None
            if pid is None or not _alive(pid):
                try:
                    os.unlink(stale)
                except OSError:
                    pass


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _save_error(filepath: str, err: OSError, folder: str, restored: List[str]) -> str:
    cause = 'no space left on device' if err.errno == errno.ENOSPC else (err.strerror or str(err))
    latest = latest_checkpoint(folder)
    kept = f'The last complete checkpoint is {latest}' if latest else 'No earlier checkpoint exists'
    if restored:
        kept += f' (kept: {", ".join(osp.basename(p) for p in restored)})'
    return (f'Could not save checkpoint {filepath}: {cause} (errno {err.errno}). Nothing was written under that '
            f'name. {kept}. Free space (or set a different work_dir) and continue with `--resume`.')


def is_loadable(path: str) -> bool:
    """Whether ``path`` is a complete checkpoint that torch's safe loader reads."""
    try:
        torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 -- truncated, not a zip, not weights-only: not a resume candidate
        return False
    return True


def _iteration(path: str) -> int:
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` should take: ``last_checkpoint``'s if it loads, else the newest
    ``iter_*.pth`` / ``epoch_*.pth`` that loads (a kill can leave ``last_checkpoint`` empty; files written by
    :class:`AtomicLocalBackend` are never partial, files from elsewhere are checked)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named and osp.isdir(named):  # DeepSpeed writes a checkpoint as a folder; trust the pointer
            return named
        if named and osp.isfile(named) and is_loadable(named):
            return named
    candidates = glob.glob(osp.join(work_dir, 'iter_*.pth')) + glob.glob(osp.join(work_dir, 'epoch_*.pth'))
    for path in sorted(candidates, key=lambda p: (_iteration(p), osp.getmtime(p)), reverse=True):
        if is_loadable(path):
            return path
    return None
