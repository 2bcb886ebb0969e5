"""Bbox2Caption ROUGE-L: the paper's stage-1 monitor (about 52% at the end of stage 1)."""
from typing import List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from granvit_mm.registry import METRICS

from ._sample import sample_field
from .rouge import rouge_l

__all__ = ['RegionCaptionMetric']


@METRICS.register_module()
class RegionCaptionMetric(BaseMetric):
    """Mean ROUGE-L F-measure (x100) of generated answers against reference captions.

    Args:
        tasks: which task types are scored (default: Bbox2Caption region captions).
    """
    default_prefix = 'bbox2caption'

    def __init__(self, tasks: Sequence[str] = ('bbox2caption', ), collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.tasks = tuple(tasks)

    def process(self, data_batch, data_samples: Sequence) -> None:
        # one entry per image: MMEngine's evaluate(size) cuts results to the dataset's number of images
        for sample in data_samples:
            preds = sample_field(sample, 'pred_texts') or []
            self.results.append([rouge_l(pred, task['answer'])
                                 for task, pred in zip(sample_field(sample, 'tasks', []), preds)
                                 if task['task'] in self.tasks])

    def compute_metrics(self, results: List[List[float]]) -> dict:
        scores = [s for image in results for s in image]
        return dict(rouge_l=float(np.mean(scores) * 100) if scores else 0.0, num=len(scores))
