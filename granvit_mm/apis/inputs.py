"""Turn user inputs into what the model needs, and refuse bad ones with :class:`InferenceInputError`.

Images: a file path, a PIL image or an HxWx3 RGB uint8 array, any size and aspect, decoded the way training
decodes (EXIF orientation applied, alpha composited on white, 16-bit scaled), with the pixel count checked on
the file header before any pixel is decoded. Boxes: xyxy in the image's own pixels, inside the image.
"""
import math
import os
import os.path as osp
from typing import Any, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from .errors import InferenceInputError

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

DEFAULT_MAX_PIXELS = 40_000_000  # a 40 MP photo; larger inputs are refused rather than decoded
MAX_PHRASE_CHARS = 1000
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif')


def _check_pixels(width: int, height: int, max_pixels: Optional[int], what: str) -> None:
    if width <= 0 or height <= 0:
        raise InferenceInputError(f'{what} is empty ({width}x{height} pixels)')
    if max_pixels is not None and width * height > max_pixels:
        raise InferenceInputError(f'{what} has {width}x{height} = {width * height} pixels, over the limit of '
                                  f'{max_pixels} pixels; downscale it first')


def _load_file(path: str, max_pixels: Optional[int]) -> np.ndarray:
    from granvit_mm.datasets.transforms.loading import decode_rgb
    if not osp.isfile(path):
        raise InferenceInputError(f'image file not found: {path!r}')
    try:
        with Image.open(path) as probe:  # header only: the size is known before any pixel is decoded
            size = probe.size
    except Image.DecompressionBombError:
        raise InferenceInputError(
            f'{path!r} has more pixels than Pillow will decode (over the pixel limit)') from None
    except Exception as e:  # Pillow raises many types for non-images
        raise InferenceInputError(f'{path!r} is not an image Pillow can read ({type(e).__name__})') from None
    _check_pixels(size[0], size[1], max_pixels, f'image {path!r}')
    with open(path, 'rb') as f:
        buf = f.read()
    try:
        img, _ = decode_rgb(buf)
    except Exception as e:
        raise InferenceInputError(f'cannot decode image {path!r}: {type(e).__name__}: {e}') from None
    return img


def load_image(image: Any, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A file path, PIL image or HxWx3 uint8 RGB array -> contiguous HxWx3 RGB uint8 array."""
    from granvit_mm.datasets.transforms.loading import pil_to_rgb
    if isinstance(image, (str, os.PathLike)):
        return _load_file(os.fspath(image), max_pixels)
    if isinstance(image, Image.Image):
        _check_pixels(image.width, image.height, max_pixels, 'the PIL image')
        return np.ascontiguousarray(pil_to_rgb(image))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InferenceInputError(f'an image array must be HxWx3 RGB, got shape {image.shape}')
        if image.dtype != np.uint8:
            raise InferenceInputError(f'an image array must be uint8, got {image.dtype}')
        _check_pixels(image.shape[1], image.shape[0], max_pixels, 'the image array')
        return np.ascontiguousarray(image)
    raise InferenceInputError('an image must be a file path, a PIL image or an HxWx3 uint8 array, got '
                              f'{type(image).__name__}')


def check_boxes(boxes: Any, width: int, height: int) -> np.ndarray:
    """(N, 4) float32 xyxy boxes in the image's own pixels; each non-empty and inside the ``width`` x
    ``height`` image. A single box may be given as 4 numbers."""
    if boxes is None:
        raise InferenceInputError('no box given')
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InferenceInputError(f'boxes must be numbers [x1, y1, x2, y2], got {boxes!r}') from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InferenceInputError(f'each box needs 4 numbers [x1, y1, x2, y2], got shape {arr.shape}')
    for i, (x1, y1, x2, y2) in enumerate(arr.tolist()):
        name = f'box {i} [{x1:g}, {y1:g}, {x2:g}, {y2:g}]'
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise InferenceInputError(f'{name} has a non-finite coordinate')
        if x2 <= x1 or y2 <= y1:
            raise InferenceInputError(f'{name} is zero-size or inverted: need x1 < x2 and y1 < y2')
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise InferenceInputError(f'{name} is outside the {width}x{height} image: need 0 <= x1 < x2 <= '
                                      f'{width} and 0 <= y1 < y2 <= {height}')
    return arr.astype(np.float32)


def check_phrase(phrase: Any) -> str:
    """A non-empty phrase to ground, stripped."""
    if not isinstance(phrase, str):
        raise InferenceInputError(f'a phrase must be text, got {type(phrase).__name__}')
    text = ' '.join(phrase.split())
    if not text:
        raise InferenceInputError('the phrase to ground is empty')
    if len(text) > MAX_PHRASE_CHARS:
        raise InferenceInputError(
            f'the phrase has {len(text)} characters, over the limit of {MAX_PHRASE_CHARS}')
    return text


def parse_box_text(text: str) -> List[float]:
    """'x1, y1, x2, y2' (commas and/or spaces, optional brackets) -> 4 floats, for the CLI and the web
    demo."""
    cleaned = str(text).strip().strip('[]()').replace(',', ' ').split()
    try:
        vals = [float(v) for v in cleaned]
    except ValueError:
        raise InferenceInputError(f'a box is 4 numbers "x1, y1, x2, y2", got {text!r}') from None
    if len(vals) != 4:
        raise InferenceInputError(f'a box is 4 numbers "x1, y1, x2, y2", got {len(vals)} in {text!r}')
    return vals


def list_images(folder: str) -> List[str]:
    """Image files directly in ``folder``, sorted by name."""
    if not osp.isdir(folder):
        raise InferenceInputError(f'not a folder: {folder!r}')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    return [osp.join(folder, n) for n in names]


def as_list(inputs: Any) -> Sequence[Any]:
    """One input or a list/tuple of them -> a list (an array or PIL image is one input)."""
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
