"""Say what a validation number means: log it next to a reference run's number (e.g. an image-blind
baseline)."""
from typing import Dict, Optional

from mmengine.hooks import Hook

from granvit_mm.registry import HOOKS

__all__ = ['BaselineReportHook']


@HOOKS.register_module()
class BaselineReportHook(Hook):
    """After each validation, log ``metric`` beside ``baseline`` and the difference, with where it comes from.

    Args:
        metric: key of the validation metrics, e.g. ``'bbox2caption/rouge_l'``.
        baseline: the reference run's value of that metric.
        meaning: one line naming the reference run and how to reproduce it.
    """
    priority = 'LOW'

    def __init__(self, metric: str, baseline: float, meaning: str):
        self.metric, self.baseline, self.meaning = metric, float(baseline), meaning

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if not metrics or self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        runner.logger.info(f'[granvit] val {self.metric} {value:.2f} vs {self.baseline:.2f} for '
                           f'{self.meaning}: {value - self.baseline:+.2f} points from what the ViT sees')
