"""What a GranViT sees: the one image pre-processing of stage 1, stage 2, the exports and inference.

RGB uint8 -> pad right/bottom to a square with ``PAD_VALUE`` -> resize to ``size`` -> ``(x - MEAN) / STD``
per channel. SigLIP's normalisation (mean = std = 0.5 in [0, 1] units) is 127.5 in uint8 units, so the pad
colour normalises to about 0. Stage 1 does the same steps in its pipeline (``GranSquareResize``) and data
preprocessor (``ImgDataPreprocessor`` with these constants).

numpy + PIL only: the exported image processor is generated from this source and
:mod:`.geometry`'s (``granvit_mm.xtuner.image_processor.standalone_source``), so an export computes these
pixels with transformers alone. ``as_rgb_uint8`` and ``image_list`` take images the ways transformers' own
processors do.
"""
from typing import Any, List, Tuple

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


def _is_single_image(obj: Any) -> bool:
    if hasattr(obj, 'convert') and hasattr(obj, 'size'):  # PIL
        return True
    return hasattr(obj, 'shape') and len(obj.shape) in (2, 3)


def image_list(images: Any) -> List[Any]:
    """One image, a batch array (N, H, W, C) / (N, C, H, W), or (nested) lists of them -> a flat list of
    images, in order (what ``transformers``' processors accept as ``images``)."""
    if isinstance(images, (str, bytes)) or _is_single_image(images):
        return [images]
    if hasattr(images, 'shape') and len(images.shape) == 4:  # numpy / torch batch
        return [images[i] for i in range(images.shape[0])]
    if isinstance(images, (list, tuple)):
        return [im for item in images for im in image_list(item)]
    raise ValueError(f'cannot read an image from {type(images).__name__}'
                     + (f' of shape {tuple(images.shape)}' if hasattr(images, 'shape') else '')
                     + ': give a PIL image, an HxWx3 / 3xHxW array, a path, or a batch or list of them')


def as_rgb_uint8(image: Any) -> np.ndarray:
    """A PIL image, a path, or an array / tensor (HxW, HxWxC or CxHxW with C in 1, 3, 4; uint8, or float in
    [0, 1] or [0, 255]) -> HxWx3 RGB uint8 (alpha dropped, grey repeated). Negative values (an image already
    normalised) are refused."""
    if isinstance(image, (str, bytes)):
        from PIL import Image
        with Image.open(image) as im:
            return np.asarray(im.convert('RGB'))
    if hasattr(image, 'convert') and hasattr(image, 'size'):  # PIL
        return np.asarray(image.convert('RGB'))
    if hasattr(image, 'detach'):  # torch
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # CxHxW
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f'expected an image (HxW, HxWx3, HxWx4 or 3xHxW), got shape {arr.shape}')
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        floating = np.issubdtype(arr.dtype, np.floating)
        arr = arr.astype(np.float64)
        if arr.size and arr.min() < 0:
            raise ValueError('got values below 0: pixel values are normalised here, not before; '
                             'give RGB uint8 or floats in [0, 1]')
        if floating and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0  # transformers' convention: float images are in [0, 1]
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    arr = arr[:, :, :3]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)
