"""MMEngine's ``DeepSpeedOptimWrapper``, plus the EMA teacher update after each DeepSpeed step.

``GranViTPretrainer`` moves its teacher in a torch optimiser step post-hook when the optimiser holds the
student's parameters. DeepSpeed (ZeRO, bf16/fp16) steps flat fp32 copies of them instead and writes the result
back into the module only after that inner step, so the hook never sees the student and the teacher would
never move. This wrapper moves it once the engine's step has been applied: on gradient-accumulation
boundaries, not on steps skipped for fp16 overflow (``engine.was_step_applied()``), and only if the post-hook
has not already done so during the step (DeepSpeed without ZeRO in fp32 steps the module's own parameters).
"""
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper

from granvit_mm.registry import OPTIM_WRAPPERS

__all__ = ['DeepSpeedTeacherOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class DeepSpeedTeacherOptimWrapper(DeepSpeedOptimWrapper):
    """``optim_wrapper=dict(type='granvit.DeepSpeedTeacherOptimWrapper', optimizer=...)`` under
    ``strategy=dict(type='DeepSpeedStrategy', ...)``; a model without ``update_teacher`` is stepped as
    usual."""

    def step(self, **kwargs) -> None:
        engine = self.model
        owner = engine.module
        teacher = getattr(owner, 'teacher', None)
        if teacher is None or not hasattr(owner, 'update_teacher'):
            return super().step(**kwargs)
        if engine.zero_optimization_stage() == 3:
            raise NotImplementedError('The EMA teacher needs the full student on every rank after a step, '
                                      'which ZeRO-3 partitions: use ZeRO stage 1 or 2 (docs/distributed.md)')
        steps_before = int(teacher.steps)
        super().step(**kwargs)
        if engine.was_step_applied() and int(teacher.steps) == steps_before:
            owner.update_teacher()
