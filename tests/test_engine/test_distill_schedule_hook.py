"""DistillScheduleHook carries the schedule only: factor warm-up and EMA update calls."""
from types import SimpleNamespace

import pytest

from granvit_mm.engine.hooks import DistillScheduleHook


class _Model:
    def __init__(self):
        self.factors, self.updates = [], []

    def set_distill_factor(self, f):
        self.factors.append(f)

    def update_teacher(self, momentum):
        self.updates.append(momentum)


def test_factor_schedule():
    hook = DistillScheduleHook(start_iter=2, warmup_iters=4)
    assert [hook.factor(i) for i in range(8)] == [0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert DistillScheduleHook().factor(0) == 1.0


@pytest.mark.parametrize('accumulate, expected', [(1, 6), (2, 3)])
def test_hook_drives_model(accumulate, expected):
    model = _Model()
    optim_wrapper = SimpleNamespace(_accumulative_counts=accumulate)
    runner = SimpleNamespace(model=model, iter=0, optim_wrapper=optim_wrapper)
    hook = DistillScheduleHook(start_iter=1, warmup_iters=2, momentum=0.1)
    for it in range(6):
        runner.iter = it
        hook.before_train_iter(runner, it)
        hook.after_train_iter(runner, it)
    assert model.factors == [0, 0.5, 1, 1, 1, 1]
    assert model.updates == [0.1] * expected


def test_bad_momentum():
    with pytest.raises(ValueError):
        DistillScheduleHook(momentum=0.9 + 0.2)
