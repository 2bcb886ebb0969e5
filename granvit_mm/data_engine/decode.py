"""Ingest: read and decode each input image safely, and record the size its boxes will refer to.

Decoding is the training reader's (``datasets/transforms/loading.decode_rgb``): EXIF orientation applied
before the size is recorded, CMYK, 16-bit, palette and alpha images turned into RGB (alpha composited on
white), the first frame of an animation. The pixel count is checked on the file header before any pixel is
decoded, and Pillow's decompression-bomb limit is set to the same value. Every failure is a counted reject
with its reason, never an exception out of the stage.
"""
import os
import os.path as osp
from typing import List, Optional

from PIL import Image, UnidentifiedImageError

from granvit_mm.registry import DATA_ENGINE_STAGES

from .item import count, reject
from .stage import Stage


def _corrupt(path: str, err: Exception) -> tuple:
    reason = 'image_truncated' if 'truncat' in str(err).lower() else 'image_undecodable'
    return reason, f'{path}: {type(err).__name__}: {err}'


@DATA_ENGINE_STAGES.register_module()
class DecodeImages(Stage):
    """Read, check and decode images (the ingest stage; always first).

    Args:
        max_pixels: larger images are refused (``image_too_large``) on their header, and Pillow's
            ``MAX_IMAGE_PIXELS`` is set to it (its decompression-bomb guard).
        max_bytes: larger files are refused unread (``file_too_large``).
    """
    name = 'ingest'

    def __init__(self, max_pixels: int = 40_000_000, max_bytes: int = 200 << 20) -> None:
        self.max_pixels, self.max_bytes = int(max_pixels), int(max_bytes)
        Image.MAX_IMAGE_PIXELS = self.max_pixels

    def provenance(self) -> dict:
        return dict(max_pixels=self.max_pixels, max_bytes=self.max_bytes)

    def process(self, items: List[dict]) -> None:
        for it in items:
            why = self._decode(it)
            if why is not None:
                reject(it, self.name, *why)

    def _read(self, path: str):
        if not osp.lexists(path):
            return None, ('image_missing', f'no such file: {path}')
        try:
            size = os.path.getsize(path)
            if size == 0:
                return None, ('image_empty', f'{path} has zero bytes')
            if size > self.max_bytes:
                return None, ('file_too_large', f'{path} has {size} bytes (max_bytes={self.max_bytes})')
            with open(path, 'rb') as f:
                return f.read(), None
        except OSError as e:
            return None, ('image_unreadable', f'cannot read {path}: {type(e).__name__}: {e}')

    def _decode(self, it: dict) -> Optional[tuple]:
        from granvit_mm.datasets.transforms.loading import decode_rgb
        buf, why = self._read(it['path'])
        if why is not None:
            return why
        import io
        try:
            with Image.open(io.BytesIO(buf)) as probe:
                w, h = probe.size
                frames = getattr(probe, 'n_frames', 1)
        except Image.DecompressionBombError as e:
            return 'image_too_large', f'{it["path"]}: {e}'
        except UnidentifiedImageError:
            return 'not_an_image', f'{it["path"]} is not an image Pillow can identify'
        except Exception as e:  # Pillow raises many types on corrupt headers
            return _corrupt(it['path'], e)
        if w * h > self.max_pixels:
            return 'image_too_large', f'{it["path"]} is {w}x{h}, over max_pixels={self.max_pixels}'
        expected = (it['height'], it['width']) if it['width'] else None
        try:
            pixels, _ = decode_rgb(buf, expected)
        except Image.DecompressionBombError as e:
            return 'image_too_large', f'{it["path"]}: {e}'
        except Exception as e:
            return _corrupt(it['path'], e)
        got = pixels.shape[:2]
        if expected is not None and tuple(got) != tuple(expected):
            return ('size_mismatch', f'{it["path"]} is {got[1]}x{got[0]} but its record says '
                    f'{expected[1]}x{expected[0]}: its boxes would land on the wrong pixels')
        it['height'], it['width'] = int(got[0]), int(got[1])
        it['pixels'] = pixels
        if frames > 1:
            it['flags'].append(f'first_of_{frames}_frames')
            count(it, 'ingest:animated_first_frame')
        return None
