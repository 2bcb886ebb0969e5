"""The self-distillation schedule: when it starts, how lambda warms up, the EMA momentum.

The hook only carries the schedule (as DINOv2's schedules); the teacher, its update and the loss live in
the algorithm (``GranViTPretrainer.update_teacher`` / ``set_distill_factor``).
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from granvit_mm.registry import HOOKS

__all__ = ['DistillScheduleHook']


@HOOKS.register_module()
class DistillScheduleHook(Hook):
    """Set the distillation factor before each train iteration; update the EMA teacher after each step.

    Args:
        start_iter: iterations before this one have factor 0 (no teacher forward, no distillation loss).
        warmup_iters: the factor then rises linearly from 1/warmup_iters to 1 over this many iterations.
        momentum: MMEngine EMA momentum = 1 - the paper's alpha (alpha 0.9 -> 0.1). None keeps the model's.
    """
    priority = 'NORMAL'

    def __init__(self, start_iter: int = 0, warmup_iters: int = 0, momentum: Optional[float] = 0.1):
        if start_iter < 0 or warmup_iters < 0:
            raise ValueError('start_iter and warmup_iters must be >= 0')
        if momentum is not None and not 0.0 < momentum < 1.0:
            raise ValueError(f'momentum must be in (0, 1), got {momentum}')
        self.start_iter = start_iter
        self.warmup_iters = warmup_iters
        self.momentum = momentum

    def factor(self, it: int) -> float:
        """The multiplier of lambda at (0-based) iteration ``it``."""
        if it < self.start_iter:
            return 0.0
        if self.warmup_iters == 0:
            return 1.0
        return min(1.0, (it - self.start_iter + 1) / self.warmup_iters)

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._model(runner).set_distill_factor(self.factor(runner.iter))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        counts = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        if (runner.iter + 1) % counts == 0:  # only after a real optimiser step
            self._model(runner).update_teacher(self.momentum)
