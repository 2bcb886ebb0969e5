"""A Hugging Face image processor that prepares images exactly as GranViT saw them in stage 1.

Pad right/bottom to a square, resize, SigLIP-normalise: :func:`granvit_mm.core.image_input.to_model_input`,
the function stage 1's pipeline, stage 2's dataset and inference all call. No stock transformers processor
pads to a square (``SiglipImageProcessor`` stretches; XTuner's ``expand2square`` centres), so exports save
this class beside the tower (``auto_map``), and ``AutoImageProcessor.from_pretrained(dir,
trust_remote_code=True)`` or ``GranViTImageProcessor.from_pretrained(dir)`` load it.
"""
from typing import List, Optional

import numpy as np
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from granvit_mm.core.image_input import PAD_VALUE, PIXEL_MEAN, PIXEL_STD, to_model_input


class GranViTImageProcessor(BaseImageProcessor):
    """RGB images (PIL or HxWx3 uint8 arrays) -> ``pixel_values`` (B, 3, size, size) float32.

    ``image_mean``/``image_std`` (0-1 units) and ``pad_value`` are recorded for tools that read them (XTuner's
    chat hook, LLaVA pipelines); the computation always uses the core constants, so they cannot drift.
    """
    model_input_names = ['pixel_values']

    def __init__(self, size: int = 512, **kwargs):
        for key in ('image_mean', 'image_std', 'pad_value'):
            kwargs.pop(key, None)  # derived, never configured
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean = [m / 255.0 for m in PIXEL_MEAN]
        self.image_std = [s / 255.0 for s in PIXEL_STD]
        self.pad_value = list(PAD_VALUE)
        self.crop_size = dict(height=self.size, width=self.size)  # what LLaVA-style tools read for the grid

    @staticmethod
    def _to_rgb_uint8(image) -> np.ndarray:
        if hasattr(image, 'convert'):  # PIL
            return np.asarray(image.convert('RGB'))
        if hasattr(image, 'numpy'):  # torch
            image = image.detach().cpu().numpy()
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:
            image = image.transpose(1, 2, 0)
        if image.dtype != np.uint8:
            raise ValueError(f'GranViTImageProcessor takes RGB uint8 images (PIL or HxWx3 arrays), got dtype '
                             f'{image.dtype}: pixel values are normalised here, not before')
        return image

    def preprocess(self, images, return_tensors: Optional[str] = None, **kwargs) -> BatchFeature:
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixels: List[np.ndarray] = [to_model_input(self._to_rgb_uint8(im), self.size)[0] for im in images]
        return BatchFeature(data={'pixel_values': np.stack(pixels)}, tensor_type=return_tensors)
