"""Caption2Bbox: Acc@IoU0.5 and mean IoU of boxes parsed from generated text."""
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from torchvision.ops import box_iou

from granvit_mm.core.box_text import parse_box
from granvit_mm.registry import METRICS

from ._sample import sample_field

__all__ = ['GroundingMetric', 'box_iou_or_zero']


def box_iou_or_zero(pred: Optional[Sequence[float]], gt: Sequence[float]) -> float:
    """IoU of two xyxy boxes; 0 for an unparsed (None) or degenerate prediction."""
    if pred is None or pred[2] <= pred[0] or pred[3] <= pred[1]:
        return 0.0
    return float(box_iou(torch.tensor([pred], dtype=torch.float64), torch.tensor([gt], dtype=torch.float64)))


@METRICS.register_module()
class GroundingMetric(BaseMetric):
    """Acc@IoU``iou_thr`` (x100), mean IoU (x100) and the count of answers that did not parse as a box.

    Unparseable answers are misses (IoU 0): the model is scored on what it wrote, not on a guess.

    Args:
        box_style: the box text style of the answers (``granvit_mm.structures.BOX_STYLES``).
        iou_thr: the accuracy threshold (0.5 as in the paper).
        tasks: which task types are scored.
    """
    default_prefix = 'caption2bbox'

    def __init__(self, box_style: str = 'decimal3', iou_thr: float = 0.5,
                 tasks: Sequence[str] = ('caption2bbox', ), collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.box_style = box_style
        self.iou_thr = iou_thr
        self.tasks = tuple(tasks)

    def process(self, data_batch, data_samples: Sequence) -> None:
        # one entry per image: MMEngine's evaluate(size) cuts results to the dataset's number of images
        for sample in data_samples:
            preds = sample_field(sample, 'pred_texts') or []
            image = []
            for task, pred in zip(sample_field(sample, 'tasks', []), preds):
                if task['task'] in self.tasks:
                    box = parse_box(pred, self.box_style)
                    image.append((box_iou_or_zero(box, task['box']), box is None))
            self.results.append(image)

    def compute_metrics(self, results: List[List[tuple]]) -> dict:
        results = [r for image in results for r in image]
        ious = np.array([r[0] for r in results], dtype=np.float64)
        n = len(results)
        return {f'acc_iou{self.iou_thr:g}': float((ious >= self.iou_thr).mean() * 100) if n else 0.0,
                'miou': float(ious.mean() * 100) if n else 0.0,
                'num_unparsed': int(sum(r[1] for r in results)), 'num': n}
