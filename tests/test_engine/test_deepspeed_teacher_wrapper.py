"""granvit.DeepSpeedTeacherOptimWrapper without DeepSpeed: a stand-in engine with DeepSpeed's step interface
(``step``, ``was_step_applied``, ``zero_optimization_stage``). The 2-process DeepSpeed run is in
test_distributed.py (where DeepSpeed is installed)."""
import pytest
import torch
from mmengine.model import ExponentialMovingAverage
from torch import nn

# registers the wrapper; configs reach it as granvit.* through the registry
import granvit_mm.engine  # noqa: F401
from granvit_mm.registry import OPTIM_WRAPPERS


class Algorithm(nn.Module):
    """What the wrapper relies on: ``teacher`` (an MMEngine EMA with ``steps``) and ``update_teacher``."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.teacher = ExponentialMovingAverage(self.backbone, momentum=0.1)
        self.teacher.steps.fill_(1)

    def update_teacher(self):
        self.teacher.update_parameters(self.backbone)


class Engine:
    """DeepSpeed's engine as the wrapper sees it: ``step`` writes the new student back into the module."""

    def __init__(self, module, applied=True, stage=2, hook_updates=False):
        self.module, self.applied, self.stage, self.hook_updates = module, applied, stage, hook_updates

    def step(self):
        if self.applied:
            with torch.no_grad():
                self.module.backbone.weight.add_(1.0)
            if self.hook_updates:  # no ZeRO, fp32: the torch optimiser's post-hook already moved the teacher
                self.module.update_teacher()

    def was_step_applied(self):
        return self.applied

    def zero_optimization_stage(self):
        return self.stage


def _wrapper(engine):
    wrapper = OPTIM_WRAPPERS.build(dict(type='granvit.DeepSpeedTeacherOptimWrapper',
                                        optimizer=torch.optim.SGD(engine.module.parameters(), lr=0.1)))
    wrapper.model = engine
    return wrapper


def test_teacher_moves_once_after_an_applied_step_from_the_written_back_student():
    model = Algorithm()
    teacher_before = model.teacher.module.weight.detach().clone()
    _wrapper(Engine(model)).step()
    assert int(model.teacher.steps) == 2
    expected = 0.9 * teacher_before + 0.1 * model.backbone.weight.detach()  # the student after the step
    torch.testing.assert_close(model.teacher.module.weight, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('engine_kwargs', [dict(applied=False), dict(hook_updates=True)],
                         ids=['micro-step or overflow skip', 'post-hook already updated'])
def test_no_update_or_no_second_update(engine_kwargs):
    model = Algorithm()
    _wrapper(Engine(model, **engine_kwargs)).step()
    assert int(model.teacher.steps) == (2 if engine_kwargs.get('hook_updates') else 1)


def test_zero3_is_refused_with_the_reason():
    with pytest.raises(NotImplementedError, match='ZeRO-3'):
        _wrapper(Engine(Algorithm(), stage=3)).step()


def test_a_model_without_a_teacher_steps_as_usual():
    plain = nn.Module()
    plain.backbone = nn.Linear(2, 2)
    before = plain.backbone.weight.detach().clone()
    _wrapper(Engine(plain)).step()
    torch.testing.assert_close(plain.backbone.weight.detach(), before + 1.0)  # the engine stepped
