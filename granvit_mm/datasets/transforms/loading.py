"""Load a Gran record's image as RGB uint8, whatever the file holds, and check it against the record.

Decoding goes through Pillow so that every mode is handled explicitly: EXIF orientation applied; grey,
palette, CMYK become RGB; alpha is composited on ``alpha_background`` (transparent documents and logos have
arbitrary colours under alpha 0, often black, which would hide dark text); 16-bit and float images are scaled
to 8 bits instead of being clipped.

The record's ``width``/``height`` are the truth the boxes refer to. If the EXIF-oriented image has that size
it is used; if only the raw (un-rotated) pixels have it, the annotation was made ignoring EXIF and the raw
pixels are used; otherwise the image does not belong to the boxes: a BadRecordError
(``on_size_mismatch='rescale'`` accepts a uniformly scaled copy, same aspect ratio within 1%, and scales the
boxes with it).
"""
import io
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from PIL import Image, ImageOps

from granvit_mm.core.gran_record import BadRecordError
from granvit_mm.registry import TRANSFORMS

_EXIF_ORIENTATION = 0x0112


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit / 32-bit / float pixel arrays to uint8 (not clip)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == 'f':
        hi = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
        return (np.nan_to_num(arr).clip(0, hi) * (255.0 / hi) + 0.5).astype(np.uint8)
    hi = 255 if arr.size == 0 or int(arr.max()) <= 255 else 65535
    return (arr.astype(np.float32).clip(0, hi) * (255.0 / hi) + 0.5).astype(np.uint8)


def pil_to_rgb(img: Image.Image, alpha_background: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Any Pillow image -> HxWx3 RGB uint8."""
    mode = img.mode
    if mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
        mode = img.mode
    if mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = img.convert('RGBA')
        bg = Image.new('RGBA', rgba.size, tuple(int(c) for c in alpha_background) + (255, ))
        return np.asarray(Image.alpha_composite(bg, rgba).convert('RGB'))
    if mode in ('I', 'F') or mode.startswith('I;'):
        grey = _to_uint8(np.asarray(img))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode != 'RGB':
        img = img.convert('RGB')
    return np.asarray(img)


def decode_rgb(buf: bytes,
               expected_hw: Optional[Tuple[int, int]] = None,
               alpha_background: Sequence[int] = (255, 255, 255),
               max_pixels: Optional[int] = None) -> Tuple[np.ndarray, bool]:
    """Decode image bytes to RGB uint8; returns (image, oriented).

    With ``expected_hw``, EXIF orientation is applied unless only the raw pixels have the expected size.
    ``max_pixels`` is checked on the header, before any pixel is decoded.
    """
    img = Image.open(io.BytesIO(buf))
    if max_pixels is not None and img.width * img.height > max_pixels:
        raise ValueError(f'{img.width}x{img.height} is over max_pixels={max_pixels}')
    img.load()
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        oriented = ImageOps.exif_transpose(img)
        raw_hw = (img.height, img.width)
        if expected_hw is None or (oriented.height, oriented.width) == tuple(expected_hw) \
                or raw_hw != tuple(expected_hw):
            return pil_to_rgb(oriented, alpha_background), True
    return pil_to_rgb(img, alpha_background), False


@TRANSFORMS.register_module()
class LoadGranImage(BaseTransform):
    """Read ``img_path`` (any mmengine file backend) into ``img`` (RGB uint8 HxWx3).

    Adds ``img_shape`` and ``ori_shape`` (h, w). Unreadable, missing or wrongly sized images raise
    BadRecordError naming shard, line and field ``image``; GranDataset skips or raises per
    ``on_bad_record``.

    Args:
        backend_args: mmengine fileio backend arguments (e.g. for object storage).
        on_size_mismatch: ``'error'`` (default) or ``'rescale'`` (see module doc).
        alpha_background: RGB colour transparent pixels are composited on.
        max_pixels: larger images are bad input (``image_too_large``) instead of a memory spike in a worker;
            checked on the record and on the file header before decoding (default 100M pixels).
    """

    def __init__(self,
                 backend_args: Optional[dict] = None,
                 on_size_mismatch: str = 'error',
                 alpha_background: Sequence[int] = (255, 255, 255),
                 max_pixels: Optional[int] = 100_000_000) -> None:
        if on_size_mismatch not in ('error', 'rescale'):
            raise ValueError(f"on_size_mismatch must be 'error' or 'rescale', got {on_size_mismatch!r}")
        self.backend_args = backend_args
        self.on_size_mismatch = on_size_mismatch
        self.alpha_background = tuple(alpha_background)
        self.max_pixels = max_pixels

    def _bad(self, results: dict, reason: str, message: str) -> BadRecordError:
        return BadRecordError(reason, message, results.get('shard', '?'), results.get('line', -1), 'image')

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        expected = (int(results['height']), int(results['width']))
        if self.max_pixels is not None and expected[0] * expected[1] > self.max_pixels:
            raise self._bad(results, 'image_too_large',
                            f'{expected[1]}x{expected[0]} is over max_pixels={self.max_pixels}')
        try:
            buf = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise self._bad(results, 'image_missing', f'no such image file: {path}') from None
        except OSError as e:
            raise self._bad(results, 'image_unreadable', f'cannot read {path}: {e}') from None
        try:
            img, _ = decode_rgb(buf, expected, self.alpha_background, self.max_pixels)
        except Exception as e:  # Pillow raises many types on corrupt data
            raise self._bad(results, 'image_unreadable', f'cannot decode {path}: {type(e).__name__}: {e}') \
                from None
        if img.shape[:2] != expected:
            self._rescale_or_fail(results, img.shape[:2], expected, path)
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _rescale_or_fail(self, results: dict, got: Tuple[int, int], expected: Tuple[int, int],
                         path: str) -> None:
        same_aspect = abs(got[1] / got[0] - expected[1] / expected[0]) <= 0.01 * expected[1] / expected[0]
        if self.on_size_mismatch != 'rescale' or not same_aspect:
            raise self._bad(
                results, 'image_size_mismatch',
                f'{path} is {got[1]}x{got[0]} (w x h) but the record says {expected[1]}x{expected[0]}; '
                'its boxes would land on the wrong pixels')
        sx, sy = got[1] / expected[1], got[0] / expected[0]
        if 'gt_bboxes' in results:
            results['gt_bboxes'] = np.asarray(results['gt_bboxes'], np.float32) * np.array([sx, sy, sx, sy],
                                                                                           np.float32)
        results['height'], results['width'] = got

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(on_size_mismatch={self.on_size_mismatch!r}, '
                f'alpha_background={self.alpha_background})')
