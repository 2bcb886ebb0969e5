"""Inference pre-processing, built from what the model was tested with instead of restated here.

- A stage-1 (MMEngine) config: its test pipeline (``test_dataloader.dataset.pipeline``, else val's, else
  train's), composed with mmengine's ``Compose`` as mmpretrain's inferencers do, minus the steps that read a
  file or draw the dataset's tasks (inference gets decoded images and asks its own questions), then the
  model's data preprocessor (``ImgDataPreprocessor``: normalisation). So a config's ``GranSquareResize``
  size and pad colour, and its ``PackGranInputs`` box style, are what inference uses.
- A stage-2 (XTuner) config or a transformers LLaVA export: the image processor the model was trained with
  (``GranViTImageProcessor``).

Either way: RGB uint8 images -> ``(pixels (B, 3, S, S) float, [SquareGeometry])``, the geometry being the one
definition in :mod:`granvit_mm.core.geometry` that maps boxes to and from the padded square.
"""
import copy
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.image_input import PAD_VALUE, PIXEL_MEAN, PIXEL_STD

__all__ = ['PipelinePreprocessor', 'ImageProcessorPreprocessor', 'config_test_pipeline']

# steps that read files or draw the dataset's questions: inference has decoded images and its own questions
SKIPPED_STEPS = ('LoadGranImage', 'SampleRegionTasks', 'GranRandomFlip')
RESIZE_STEP = 'GranSquareResize'
PACK_STEP = 'PackGranInputs'
DEFAULT_DATA_PREPROCESSOR = dict(type='ImgDataPreprocessor', mean=list(PIXEL_MEAN), std=list(PIXEL_STD),
                                 bgr_to_rgb=False)


def _type_name(step) -> str:
    kind = step.get('type', '') if isinstance(step, dict) else type(step).__name__
    return getattr(kind, '__name__', str(kind)).split('.')[-1]


def config_test_pipeline(cfg) -> Optional[list]:
    """The pipeline a config tests with (test, else val, else train dataloader's; else ``test_pipeline``)."""
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        if dataset.get('pipeline'):
            return list(dataset['pipeline'])
    return list(cfg['test_pipeline']) if cfg.get('test_pipeline') else None


class PipelinePreprocessor:
    """A config's test pipeline (minus loading and task drawing) + the model's data preprocessor.

    Args:
        pipeline: transform configs (or built transforms); must contain ``GranSquareResize``.
        data_preprocessor: a built data preprocessor module (e.g. the stage-1 model's), or its config;
            default SigLIP's normalisation (:mod:`granvit_mm.core.image_input`).
    """

    def __init__(self, pipeline: Sequence, data_preprocessor=None):
        from mmengine.dataset import Compose

        from granvit_mm.registry import MODELS, TRANSFORMS
        steps = [copy.deepcopy(s) for s in pipeline
                 if _type_name(s) not in SKIPPED_STEPS and not _type_name(s).startswith('Load')]
        if not any(_type_name(s) == RESIZE_STEP for s in steps):
            raise ValueError(f'the test pipeline has no {RESIZE_STEP}: inference cannot map boxes to and '
                             f'from the model input without it (steps: {[_type_name(s) for s in pipeline]})')
        if not any(_type_name(s) == PACK_STEP for s in steps):
            steps.append(dict(type=f'granvit.{PACK_STEP}'))
        self.transforms = [TRANSFORMS.build(s) if isinstance(s, dict) else s for s in steps]
        self.pipeline = Compose(self.transforms)
        resize = next(t for t in self.transforms if _type_name(t) == RESIZE_STEP)
        self.size = int(resize.size)
        self.pad_value = tuple(resize.pad_val)
        self.box_style = next(t for t in self.transforms if _type_name(t) == PACK_STEP).box_style
        if data_preprocessor is None or isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(copy.deepcopy(data_preprocessor or DEFAULT_DATA_PREPROCESSOR))
        self.data_preprocessor = data_preprocessor

    @classmethod
    def from_config(cls, cfg, size: Optional[int] = None, default_size: Optional[int] = None,
                    data_preprocessor=None) -> 'PipelinePreprocessor':
        """The config's test pipeline; ``size`` overrides its resize. A config without a Gran test pipeline
        (none, or a downstream mmdet/mmseg one) gets stage 1's pre-processing at its ``img_size``, else
        ``default_size``. The data preprocessor defaults to the config's ``model.data_preprocessor``."""
        pipeline = config_test_pipeline(cfg)
        if pipeline is None or not any(_type_name(s) == RESIZE_STEP for s in pipeline):
            size = size or cfg.get('img_size') or default_size
            if not size:
                raise ValueError('the config has no Gran test pipeline and no input size was given')
            return cls.default(size)
        if size:
            pipeline = [dict(s, size=int(size)) if _type_name(s) == RESIZE_STEP else s for s in pipeline]
        if data_preprocessor is None:
            data_preprocessor = (cfg.get('model') or {}).get('data_preprocessor')
        return cls(pipeline, data_preprocessor)

    @classmethod
    def default(cls, size: int, data_preprocessor=None) -> 'PipelinePreprocessor':
        """Stage 1's pre-processing at ``size``, for models without a config pipeline (converted SigLIP2)."""
        return cls([dict(type=f'granvit.{RESIZE_STEP}', size=int(size), pad_val=PAD_VALUE),
                    dict(type=f'granvit.{PACK_STEP}')], data_preprocessor)

    @staticmethod
    def _results(image: np.ndarray) -> dict:
        h, w = image.shape[:2]
        return dict(img=image, img_shape=(h, w), ori_shape=(h, w), height=h, width=w,
                    gt_bboxes=np.zeros((0, 4), np.float32), region_captions=[], region_kinds=[], caption=None,
                    task_specs=[], distill_regions=[], sample_idx=0)

    def __call__(self, images: Sequence[np.ndarray],
                 device=None) -> Tuple[torch.Tensor, List[SquareGeometry]]:
        packed = [self.pipeline(self._results(img)) for img in images]
        batch = self.data_preprocessor(dict(inputs=[p['inputs'] for p in packed],
                                            data_samples=[p['data_samples'] for p in packed]), False)
        pixels = batch['inputs'].float()
        geoms = [SquareGeometry(img.shape[0], img.shape[1], int(p['inputs'].shape[-1]))
                 for img, p in zip(images, packed)]
        return (pixels if device is None else pixels.to(device)), geoms


class ImageProcessorPreprocessor:
    """A Hugging Face image processor that pads to a square (``GranViTImageProcessor``: stage 2, exports)."""

    def __init__(self, processor):
        self.processor = processor
        self.size = int(processor.size)
        self.pad_value = tuple(getattr(processor, 'pad_value', PAD_VALUE))

    def __call__(self, images: Sequence[np.ndarray],
                 device=None) -> Tuple[torch.Tensor, List[SquareGeometry]]:
        pixels = self.processor(images=list(images), return_tensors='pt')['pixel_values'].float()
        geoms = [SquareGeometry(img.shape[0], img.shape[1], self.size) for img in images]
        return (pixels if device is None else pixels.to(device)), geoms
