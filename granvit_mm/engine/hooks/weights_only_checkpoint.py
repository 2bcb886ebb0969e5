"""Make MMEngine checkpoints loadable with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and MMEngine 0.10.x checkpoints hold pickled
``HistoryBuffer`` objects and numpy values in ``message_hub``, so ``--resume`` fails. Turning safe loading off
globally (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) would also unpickle untrusted files, so instead this hook
writes checkpoints that contain only tensors and plain Python values, and restores MMEngine's objects after
loading. Untrusted checkpoints stay behind torch's safe loader.

It also makes every checkpoint write atomic, so a kill or a full disk while saving never leaves a half-written
checkpoint that ``--resume`` could pick up, and never costs a checkpoint that was already saved: the run's
``CheckpointHook`` writes through :class:`~granvit_mm.engine.checkpoint_io.AtomicLocalBackend` (temp file +
fsync + ``os.replace``; old checkpoints removed only after the new one landed), and under MMEngine's
``FlexibleRunner`` (FSDP, DeepSpeed), whose strategies write with their own code, the strategy's
``save_checkpoint`` writes under a temp name that is renamed once every rank has finished
(:func:`~granvit_mm.engine.checkpoint_io.atomic_strategy_save`).
"""
from typing import Any

import numpy as np
import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import HistoryBuffer

from granvit_mm.registry import HOOKS

from ..checkpoint_io import ATOMIC_BACKEND, AtomicLocalBackend, install_atomic_strategy_save

_BUFFER_TAG = '__granvit_history_buffer__'
_NDARRAY_TAG = '__granvit_ndarray__'


def to_weights_only(obj: Any) -> Any:
    """Recursively replace objects ``weights_only`` refuses by tagged dicts of tensors and plain values."""
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {_BUFFER_TAG: True, 'log': torch.from_numpy(np.asarray(log, dtype=np.float64)),
                'count': torch.from_numpy(np.asarray(count, dtype=np.float64)),
                'max_length': int(obj.max_length)}
    if isinstance(obj, np.ndarray):
        return {_NDARRAY_TAG: True, 'data': torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, to_weights_only(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        out = [to_weights_only(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, (set, frozenset)):
        return [to_weights_only(v) for v in obj]
    return obj


def from_weights_only(obj: Any) -> Any:
    """Inverse of :func:`to_weights_only` for the tagged values; everything else is returned unchanged."""
    if isinstance(obj, dict):
        if obj.get(_BUFFER_TAG) is True:
            return HistoryBuffer(obj['log'].numpy(), obj['count'].numpy(), max_length=obj['max_length'])
        if obj.get(_NDARRAY_TAG) is True:
            return obj['data'].numpy()
        return type(obj)((k, from_weights_only(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [from_weights_only(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_weights_only(v) for v in obj)
    return obj


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Save checkpoints that torch's safe loader accepts, and restore MMEngine state on resume.

    Add it to ``custom_hooks`` (our ``default_runtime`` does). It touches only the non-weight parts of a
    checkpoint (``message_hub``, ``meta``, scheduler states); model and optimizer tensors are unchanged.

    Args:
        atomic: write local checkpoints atomically (see the module docstring), with every runner; a
            ``CheckpointHook`` with its own ``backend_args`` / ``file_client_args`` (e.g. object storage) is
            left as configured.
    """
    priority = 'VERY_LOW'  # after every other hook has added to the checkpoint

    _SANITISED_KEYS = ('message_hub', 'meta', 'param_schedulers', 'optimizer')

    def __init__(self, atomic: bool = True) -> None:
        self.atomic = atomic

    def before_train(self, runner) -> None:
        """Runs after ``CheckpointHook.before_train`` (same priority, registered later): swap its backend."""
        if not self.atomic:
            return
        for hook in runner.hooks:
            if (isinstance(hook, CheckpointHook) and hook.backend_args is None
                    and hook.file_client_args is None and '://' not in str(hook.out_dir)):
                hook.backend_args = dict(backend=ATOMIC_BACKEND)
                hook.file_backend = AtomicLocalBackend()  # also its removals (they wait for the next save)
                if hasattr(runner, 'strategy'):  # FlexibleRunner: the strategy writes, with its own code
                    install_atomic_strategy_save(runner.strategy)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in self._SANITISED_KEYS:
            if key in checkpoint:
                checkpoint[key] = to_weights_only(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in self._SANITISED_KEYS:
            if key in checkpoint:
                checkpoint[key] = from_weights_only(checkpoint[key])
