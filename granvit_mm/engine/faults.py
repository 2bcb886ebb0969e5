"""What to tell the user when a training run stops on an error: the cause, and where to continue from.

The run still raises (with its traceback); this adds the two facts a user needs after a crash at scale: what
stopped it, in words, and which complete checkpoint ``--resume`` will take.
"""
import errno
from typing import Optional

from .checkpoint_io import latest_checkpoint

__all__ = ['describe_stop']


def _worker_died(err: BaseException) -> bool:
    """PyTorch reports a dead worker as 'DataLoader worker ... exited unexpectedly', or, when the worker dies
    while the main process fetches a batch's shared memory from it, as a connection error in the loader."""
    if 'DataLoader worker' in str(err):
        return True
    if not isinstance(err, (ConnectionError, EOFError)):
        return False
    tb = err.__traceback__
    while tb is not None:
        if 'torch/utils/data' in tb.tb_frame.f_code.co_filename.replace('\\', '/'):
            return True
        tb = tb.tb_next
    return False


def _cause(err: BaseException) -> str:
    text = f'{type(err).__name__}: {err}'
    if _worker_died(err):
        return (f'{text} -- a dataloader worker process died (most often the kernel OOM killer: lower '
                '`num_workers`, the batch size, or the memory other jobs take)')
    if isinstance(err, FileNotFoundError) or 'No such file or directory' in str(err):
        return f'{text} -- a data file disappeared or is unreachable (shard deleted or storage unmounted?)'
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f'{text} -- the disk is full'
    return text


def describe_stop(err: BaseException, work_dir: str, iteration: Optional[int] = None) -> str:
    where = f' at iteration {iteration}' if iteration is not None else ''
    ckpt = latest_checkpoint(work_dir)
    resume = (f'The last complete checkpoint is {ckpt}; continue with `--resume` (it takes that one).'
              if ckpt else 'No complete checkpoint was saved yet; the run has to start again.')
    return f'[granvit] Training stopped{where}: {_cause(err)}\n[granvit] {resume}'
