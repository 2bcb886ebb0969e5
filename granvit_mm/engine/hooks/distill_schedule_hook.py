"""The optional warm-up of the self-distillation weight: when it starts and how fast it reaches lambda.

The hook only carries the schedule (as DINOv2's schedules): the teacher, its EMA update and its momentum
belong to ``GranViTPretrainer``, and the weight to ``RegionDistillLoss``. Without this hook the loss runs at
full weight from the first iteration (the paper's setting).
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from granvit_mm.registry import HOOKS

__all__ = ['DistillScheduleHook']


@HOOKS.register_module()
class DistillScheduleHook(Hook):
    """Set the model's distillation factor before each train iteration.

    Args:
        start_iter: iterations before this one have factor 0 (no teacher forward, no distillation loss).
        warmup_iters: the factor then rises linearly from 1/warmup_iters to 1 over this many iterations.
    """
    priority = 'NORMAL'

    def __init__(self, start_iter: int = 0, warmup_iters: int = 0):
        if start_iter < 0 or warmup_iters < 0:
            raise ValueError('start_iter and warmup_iters must be >= 0')
        self.start_iter = start_iter
        self.warmup_iters = warmup_iters

    def factor(self, it: int) -> float:
        """The multiplier of lambda at (0-based) iteration ``it``."""
        if it < self.start_iter:
            return 0.0
        if self.warmup_iters == 0:
            return 1.0
        return min(1.0, (it - self.start_iter + 1) / self.warmup_iters)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.set_distill_factor(self.factor(runner.iter))
