"""Multi-process training without CUDA: a gloo process group that MMEngine 0.10 will accept.

MMEngine 0.10's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` unconditionally, so
``--launcher pytorch`` dies on a machine without a GPU. ``Runner.setup_env`` (and the strategies'
``setup_distributed``) skip ``init_dist`` when a process group already exists, so the tools create the gloo
group themselves before the runner is built; nothing installed is edited. On a CUDA machine nothing changes:
MMEngine sets the device and starts NCCL as usual.

On CPU, DDP also refuses ``device_ids`` (which MMEngine always passes for DDP wrappers):
:func:`adapt_cfg_for_cpu` sets them to None.
"""
import datetime
import os
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

__all__ = ['needs_cpu_process_group', 'init_cpu_process_group', 'adapt_cfg_for_cpu', 'setup_distributed']

_DDP_WRAPPERS = ('MMDistributedDataParallel', 'DistributedDataParallel')


def needs_cpu_process_group(launcher: str) -> bool:
    """A distributed launch on a machine without CUDA, which MMEngine's ``init_dist`` cannot start."""
    return launcher != 'none' and not torch.cuda.is_available()


def init_cpu_process_group(launcher: str = 'pytorch', timeout_s: int = 1800) -> None:
    """Start the gloo group from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR/PORT``)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise RuntimeError(f'CPU multi-process training supports --launcher pytorch (torchrun / '
                           f'tools/dist_train.sh), not {launcher!r}')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the torchrun environment; {missing} not set. '
                           'Start with `bash tools/dist_train.sh CONFIG NPROC` or '
                           '`torchrun ... --launcher pytorch`')
    torch_dist.init_process_group(backend='gloo', init_method='env://',
                                  timeout=datetime.timedelta(seconds=timeout_s))


def adapt_cfg_for_cpu(cfg: Config) -> Config:
    """gloo in ``env_cfg.dist_cfg``; DDP without ``device_ids`` (CPU modules reject them)."""
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    strategy = cfg.get('strategy')
    if strategy is not None:  # FlexibleRunner: its strategy builds the wrapper
        if 'FSDP' in str(strategy.get('type', '')):
            strategy.setdefault('model_wrapper', {})['device_id'] = 'cpu'  # default: LOCAL_RANK, a CUDA index
        return cfg
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters', False),
                                     device_ids=None)
    elif str(wrapper.get('type', 'MMDistributedDataParallel')).split('.')[-1] in _DDP_WRAPPERS:
        wrapper.setdefault('device_ids', None)
    return cfg


def setup_distributed(cfg: Config, launcher: str, timeout_s: Optional[int] = None) -> Config:
    """Called by tools/train.py and tools/test.py before the runner is built (a no-op on CUDA / 1 process)."""
    if not needs_cpu_process_group(launcher):
        return cfg
    timeout_s = timeout_s or int(cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800))
    init_cpu_process_group(launcher, timeout_s)
    return adapt_cfg_for_cpu(cfg)
