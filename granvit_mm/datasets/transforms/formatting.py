"""``PackGranInputs``: the pipeline's last step, producing what docs/CONTRACTS.md promises the model."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from granvit_mm.core.box_text import BOX_STYLES
from granvit_mm.registry import TRANSFORMS
from granvit_mm.structures.data_sample import GranDataSample

from ..region_tasks import build_tasks

DEFAULT_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'scale_factor', 'source', 'sample_idx', 'shard',
                     'line')


@TRANSFORMS.register_module()
class PackGranInputs(BaseTransform):
    """Pack ``dict(inputs=uint8 (3, S, S) RGB tensor, data_samples=GranDataSample)``.

    The sample's ``tasks`` get their questions and answers here, from the final normalised boxes
    (``gt_bboxes_norm``, set by ``GranSquareResize``), with ``granvit_mm.prompts`` and the one box
    formatter in ``box_style``; ``distill_bboxes`` holds the ``distill_regions`` boxes in model-input pixels.
    """

    def __init__(self, box_style: str = 'decimal3', meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        if box_style not in BOX_STYLES:
            raise ValueError(f'unknown box_style {box_style!r}; expected one of {BOX_STYLES}')
        self.box_style = box_style
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        for key, step in (('task_specs', 'granvit.SampleRegionTasks'), ('gt_bboxes_norm',
                                                                        'granvit.GranSquareResize')):
            if key not in results:
                raise KeyError(f'PackGranInputs needs {key!r}: put {step} before it in the pipeline')
        img = results['img']
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f'PackGranInputs expects an RGB uint8 HxWx3 image, got {img.shape} {img.dtype}')
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = GranDataSample(metainfo={k: results[k] for k in self.meta_keys if k in results})
        sample.tasks = build_tasks(results['task_specs'], results['gt_bboxes_norm'],
                                   results['region_captions'], results.get('caption'), self.box_style)
        boxes = np.asarray(results['gt_bboxes'], np.float32).reshape(-1, 4)
        distill = list(results.get('distill_regions', []))
        sample.distill_bboxes = torch.from_numpy(boxes[distill].reshape(-1, 4))
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(box_style={self.box_style!r})'
