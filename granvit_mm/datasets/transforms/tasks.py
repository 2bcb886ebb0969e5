"""``SampleRegionTasks``: pick an image's tasks and self-distillation regions, reproducibly."""
from typing import Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform

from granvit_mm.registry import TRANSFORMS

from ..region_tasks import check_caption_turn, check_task_mix, pick_distill_regions, sample_task_specs

STAGE1_TASKS = dict(global_caption=1, bbox2caption=4)


@TRANSFORMS.register_module()
class SampleRegionTasks(BaseTransform):
    """Choose which tasks an image yields; the text is built later by ``PackGranInputs``.

    Sets ``task_specs`` (list of (task, region)) and ``distill_regions`` (region indices, the sampled
    tasks' regions first, at most ``max_distill_regions``).

    Args:
        tasks: {task: amount}; amount ``v`` = ``floor(v)`` tasks plus one with probability ``frac(v)``.
            Stage 1: ``dict(global_caption=1, bbox2caption=4)`` (default); stage 2:
            ``dict(global_caption=1, caption2bbox=4)``. The global caption is used only when present.
        seed: with the record's ``epoch`` and ``sample_idx`` it seeds the draw, so every worker and rank
            draws the same tasks for the same image (val: keep epoch 0 for a fixed set).
        mode: ``'random'`` or ``'first'`` (the first regions, e.g. for a fixed, order-defined val set).
        max_distill_regions: boxes for self-distillation (docs/method.md default 4).
        unique_grounding: Caption2Bbox only on regions whose caption is unique in the image.
        skip_empty: return None (the dataset draws another image) when no task was drawn, e.g. an OCR
            page without a global caption under ``tasks=dict(global_caption=1)``.
        caption_turn: the global-caption turn ``'first'`` (stage 1) or ``'last'`` (stage 2: no Caption2Bbox
            answer can read the caption's coarse places) in the conversation.
    """

    def __init__(self,
                 tasks: Optional[Dict[str, float]] = None,
                 seed: int = 0,
                 mode: str = 'random',
                 max_distill_regions: int = 4,
                 unique_grounding: bool = True,
                 skip_empty: bool = True,
                 caption_turn: str = 'first') -> None:
        if mode not in ('random', 'first'):
            raise ValueError(f"mode must be 'random' or 'first', got {mode!r}")
        self.tasks = check_task_mix(STAGE1_TASKS if tasks is None else tasks)
        self.seed = int(seed)
        self.mode = mode
        self.max_distill_regions = int(max_distill_regions)
        self.unique_grounding = unique_grounding
        self.skip_empty = skip_empty
        self.caption_turn = check_caption_turn(caption_turn)

    def transform(self, results: dict) -> Optional[dict]:
        rng = np.random.default_rng(
            [self.seed, int(results.get('epoch', 0)),
             int(results.get('sample_idx', 0))])
        captions = results['region_captions']
        specs = sample_task_specs(captions, bool(results.get('caption')), self.tasks, rng, self.mode,
                                  self.unique_grounding, self.caption_turn)
        if not specs and self.skip_empty:
            return None
        results['task_specs'] = specs
        results['distill_regions'] = pick_distill_regions(specs, len(captions), self.max_distill_regions, rng)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(tasks={self.tasks}, seed={self.seed}, mode={self.mode!r}, '
                f'max_distill_regions={self.max_distill_regions}, caption_turn={self.caption_turn!r})')
