"""Crash-safe checkpoint files: a write is all or nothing, and an old checkpoint goes only after a new one
landed.

MMEngine's ``LocalBackend.put`` opens the final path and writes into it, so a SIGKILL (or a full disk) while
saving leaves a truncated ``iter_N.pth`` under the final name. ``CheckpointHook`` also deletes the checkpoint
beyond ``max_keep_ckpts`` (and the previous best) *before* it saves the new one, so a failed save loses it.

:class:`AtomicLocalBackend` fixes both without touching MMEngine: ``put`` writes a hidden temp file in the
same folder, fsyncs it and ``os.replace``-s it onto the final name (atomic on POSIX); ``remove`` only moves a
file aside, and the files moved aside are deleted after the next successful ``put`` or moved back when it
fails. ``WeightsOnlyCheckpointHook`` installs it on the run's ``CheckpointHook``. Under MMEngine's
``FlexibleRunner`` the strategy writes the checkpoint with its own code (FSDP: one file from rank 0, or a
folder of rank files; DeepSpeed: a folder every rank writes into), so the hook also wraps the strategy's
``save_checkpoint`` (:func:`atomic_strategy_save`): it writes under a hidden temp name, waits for every rank,
then rank 0 renames it onto the final name. ``last_checkpoint`` is written by MMEngine after the checkpoint,
so it only ever names a complete file; :func:`latest_checkpoint` (used by ``tools/train.py --resume``) also
survives a ``last_checkpoint`` that a kill left empty.
"""
import errno
import functools
import glob
import os
import os.path as osp
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Union

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from granvit_mm.core.checkpoint_reader import find_checkpoint, is_loadable, read_checkpoint

__all__ = ['AtomicLocalBackend', 'CheckpointSaveError', 'ATOMIC_BACKEND', 'latest_checkpoint', 'is_loadable',
           'load_from_local', 'atomic_strategy_save', 'install_atomic_strategy_save']

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

    def rmtree(self, dir_path: Union[str, Path]) -> None:
        """A checkpoint directory (DeepSpeed) is moved aside like a file, until the next save landed."""
        self.remove(dir_path)

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
            _delete(aside)
        # files a killed run had moved aside or half-written: never picked up, only taking space
        for stale in glob.glob(osp.join(folder, f'.*{_REMOVED_TAG}')) + \
                glob.glob(osp.join(folder, f'.*{_TMP_TAG}*')):
            pid = stale.rsplit(_TMP_TAG, 1)[-1] if _TMP_TAG in stale else None
            if pid is None or not _alive(pid):
                _delete(stale)


def _delete(path: str) -> None:
    """Remove a file or a checkpoint directory, quietly (it is only taking space)."""
    try:
        if osp.isdir(path) and not osp.islink(path):
            shutil.rmtree(path)
        elif osp.lexists(path):
            os.unlink(path)
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
    return (f'Could not save checkpoint {filepath}: {cause} (errno {err.errno}). Nothing was written under '
            f'that name. {kept}. Free space (or set a different work_dir) and continue with `--resume`.')


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` takes: :func:`~granvit_mm.core.checkpoint_reader.find_checkpoint` of
    ``work_dir`` (``last_checkpoint``'s if it loads, else the newest ``iter_*`` / ``epoch_*`` that does)."""
    return find_checkpoint(work_dir, prefer='last', check=True)


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str, map_location=None):  # the name MMEngine logs: 'local'
    """MMEngine's loader for local paths (``load_from``, resume, ``Pretrained`` init) replaced by the
    project's reader: weights-only, and a refused file says what to run (MMEngine's own calls ``torch.load``
    with torch's default, which is weights-only since torch 2.6 and fails with an unpickling trace)."""
    return read_checkpoint(filename, map_location=map_location)


_STRATEGY_TMP = _TMP_TAG + 'strategy'  # one name on every rank (a pid would differ between them)


def _commit(tmp: str, final: str) -> None:
    """Give ``tmp`` (a file or a folder) the name ``final``; an older ``final`` is deleted only afterwards."""
    aside = None
    if osp.isdir(final) and not osp.islink(final):
        aside = _hidden(final, _REMOVED_TAG)
        _delete(aside)
        os.replace(final, aside)  # a folder cannot be renamed onto an existing one
    os.replace(tmp, final)
    _fsync_dir(osp.dirname(osp.abspath(final)))
    if aside:
        _delete(aside)


def atomic_strategy_save(save):
    """A FlexibleRunner strategy's ``save_checkpoint(filename, ...)`` that never leaves a partial checkpoint
    under ``filename``: every rank writes to a hidden temp name, and after a barrier rank 0 renames it."""
    if getattr(save, '__granvit_atomic__', False):
        return save

    @functools.wraps(save)
    def wrapped(filename, *args, **kwargs):
        if '://' in str(filename):  # remote storage: as the strategy does it
            return save(filename, *args, **kwargs)
        filename = str(filename)
        folder = osp.dirname(osp.abspath(filename))
        tmp = _hidden(filename, _STRATEGY_TMP)
        if is_main_process():
            os.makedirs(folder, exist_ok=True)
            _delete(tmp)  # what a killed run left half-written
        barrier()
        try:
            result = save(tmp, *args, **kwargs)
            barrier()
            if is_main_process():
                _commit(tmp, filename)
        except OSError as err:
            _delete(tmp)
            restored = AtomicLocalBackend._restore_removed(folder)
            raise CheckpointSaveError(err.errno, _save_error(filename, err, folder, restored)) from err
        barrier()
        if is_main_process():
            AtomicLocalBackend._drop_removed(folder)
        return result

    wrapped.__granvit_atomic__ = True
    return wrapped


def install_atomic_strategy_save(strategy) -> None:
    """Make ``strategy.save_checkpoint`` (FSDP, DeepSpeed, any MMEngine strategy) atomic, once."""
    strategy.save_checkpoint = atomic_strategy_save(strategy.save_checkpoint)
