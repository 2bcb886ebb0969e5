"""The per-image sample that travels from the pipeline to the model and back out to the metrics."""
from typing import List, Optional

from mmengine.structures import BaseDataElement


class GranDataSample(BaseDataElement):
    """One image's region tasks and, after ``predict``, the generated answers.

    Data fields (set by ``PackGranInputs`` unless noted):
    - ``tasks``: list of dicts ``{'task', 'question', 'answer', 'box', 'region'}``; ``task`` is one of
      ``prompts.TASKS``; ``box`` is the normalised xyxy box of the region (None for global captions);
      ``region`` the index of the region in the record (-1 for global captions).
    - ``gt_bboxes``: float tensor (M, 4), xyxy boxes in model-input pixels of the regions used for
      self-distillation (at most ``max_distill_regions``).
    - ``pred_texts``: list of generated answers, one per task (set by the model's ``predict``).

    Metainfo: ``img_path``, ``ori_shape`` (h, w), ``img_shape`` (S, S), ``scale_factor``, ``source``,
    ``sample_idx``, ``shard``, ``line``.
    """

    @property
    def tasks(self) -> List[dict]:
        return self._tasks

    @tasks.setter
    def tasks(self, value: List[dict]) -> None:
        self.set_field(list(value), '_tasks', dtype=list)

    @property
    def pred_texts(self) -> Optional[List[str]]:
        return getattr(self, '_pred_texts', None)

    @pred_texts.setter
    def pred_texts(self, value: List[str]) -> None:
        self.set_field(list(value), '_pred_texts', dtype=list)
