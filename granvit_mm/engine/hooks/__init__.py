from .baseline_report_hook import BaselineReportHook  # noqa: F401
from .distill_schedule_hook import DistillScheduleHook  # noqa: F401
from .weights_only_checkpoint import WeightsOnlyCheckpointHook  # noqa: F401
