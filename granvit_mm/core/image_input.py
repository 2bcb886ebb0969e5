"""What a GranViT sees: the one image pre-processing of stage 1, stage 2, the exports and inference.

RGB uint8 -> pad right/bottom to a square with ``PAD_VALUE`` -> resize to ``size`` -> ``(x - MEAN) / STD``
per channel. SigLIP's normalisation (mean = std = 0.5 in [0, 1] units) is 127.5 in uint8 units, so the pad
colour normalises to about 0. Stage 1 does the same steps in its pipeline (``GranSquareResize``) and data
preprocessor (``ImgDataPreprocessor`` with these constants).
"""
from typing import Tuple

import numpy as np

from .geometry import SquareGeometry, square_resize

PIXEL_MEAN = (127.5, 127.5, 127.5)  # uint8 units (SigLIP: 0.5 of [0, 1])
PIXEL_STD = (127.5, 127.5, 127.5)
PAD_VALUE = (127, 127, 127)


def to_model_input(img: np.ndarray, size: int) -> Tuple[np.ndarray, SquareGeometry]:
    """HxWx3 RGB uint8 -> (3, size, size) float32 normalised model input, and its geometry (to map boxes)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'expected an RGB uint8 HxWx3 image, got shape {img.shape} dtype {img.dtype}')
    square, geom = square_resize(img, size, PAD_VALUE)
    x = (square.astype(np.float32) - np.asarray(PIXEL_MEAN, np.float32)) / np.asarray(PIXEL_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), geom
