"""The per-image sample that travels from the pipeline to the model and back out to the metrics."""
from mmengine.structures import BaseDataElement


class GranDataSample(BaseDataElement):
    """One image's region tasks and, after ``predict``, the generated answers.

    Plain data fields under their public names, so ``to_dict()`` (what MMEngine's Evaluator hands the
    metrics) carries ``tasks`` and ``pred_texts`` as they are:
    - ``tasks``: list of dicts ``{'task', 'question', 'answer', 'box', 'region'}``; ``task`` is one of
      ``prompts.TASKS``; ``box`` is the normalised xyxy box of the region (None for global captions);
      ``region`` the index of the region in the record (-1 for global captions). Set by ``PackGranInputs``.
    - ``distill_bboxes``: float tensor (M, 4), xyxy boxes in model-input pixels of the regions used for
      self-distillation (at most ``max_distill_regions``). Set by ``PackGranInputs``.
    - ``pred_texts``: list of generated answers, one per task (set by the model's ``predict``).

    Metainfo: ``img_path``, ``ori_shape`` (h, w), ``img_shape`` (S, S), ``scale_factor``, ``source``,
    ``sample_idx``, ``shard``, ``line``.
    """
