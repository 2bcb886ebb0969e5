"""DistillScheduleHook carries the warm-up schedule only (the algorithm owns the teacher update)."""
from types import SimpleNamespace

import pytest

from granvit_mm.engine.hooks import DistillScheduleHook


class _Model:
    def __init__(self):
        self.factors = []

    def set_distill_factor(self, f):
        self.factors.append(f)


def test_factor_schedule():
    hook = DistillScheduleHook(start_iter=2, warmup_iters=4)
    assert [hook.factor(i) for i in range(8)] == [0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert DistillScheduleHook().factor(0) == 1.0


def test_hook_sets_factor_only():
    model = _Model()
    runner = SimpleNamespace(model=model, iter=0)
    hook = DistillScheduleHook(start_iter=1, warmup_iters=2)
    for it in range(6):
        runner.iter = it
        hook.before_train_iter(runner, it)
        hook.after_train_iter(runner, it)
    assert model.factors == [0, 0.5, 1, 1, 1, 1]


def test_bad_schedule():
    with pytest.raises(ValueError):
        DistillScheduleHook(start_iter=-1)
    with pytest.raises(TypeError):
        DistillScheduleHook(momentum=0.1)  # the momentum is the model's (ema_momentum), not the hook's
