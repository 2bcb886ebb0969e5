"""Image geometry shared by training, inference and the HF image processor: pad to a square, then resize.

The paper pads images to a square and resizes them to 512x512. Boxes are normalised relative to the padded
square, so the same box text means the same pixels whatever the model resolution.

numpy + PIL only (no OpenCV, no package imports): exported models carry a copy of these functions in their
self-contained image processor (:mod:`granvit_mm.xtuner.image_processor` generates it from this source).
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class SquareGeometry:
    """How an (h, w) image maps onto the padded, resized ``size`` x ``size`` model input.

    The image is placed at the top-left of a square of side ``max(h, w)`` (padding right/bottom), then
    scaled by ``size / max(h, w)``. Top-left placement keeps box coordinates unchanged by the padding.
    """
    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def scale(self) -> float:
        return self.size / self.side

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-pixel xyxy boxes -> model-input pixel xyxy boxes."""
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * self.scale

    def to_normalized(self, boxes: np.ndarray) -> np.ndarray:
        """Original-pixel xyxy boxes -> [0, 1] xyxy relative to the padded square."""
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / self.side

    def from_normalized(self, boxes: np.ndarray) -> np.ndarray:
        """[0, 1] boxes relative to the padded square -> original-pixel xyxy boxes (clipped to the image)."""
        out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * self.side
        out[:, 0::2] = out[:, 0::2].clip(0, self.width)
        out[:, 1::2] = out[:, 1::2].clip(0, self.height)
        return out


def pad_to_square(img: np.ndarray, pad_value: Sequence[int] = (127, 127, 127)) -> np.ndarray:
    """Pad an HWC image at the right/bottom to a square of side max(h, w)."""
    h, w = img.shape[:2]
    side = max(h, w)
    if h == w:
        return img
    out = np.empty((side, side) + img.shape[2:], dtype=img.dtype)
    out[...] = np.asarray(pad_value, dtype=img.dtype)
    out[:h, :w] = img
    return out


def square_resize(img: np.ndarray, size: int, pad_value: Sequence[int] = (127, 127, 127)
                  ) -> Tuple[np.ndarray, SquareGeometry]:
    """Pad to a square and resize to ``size``; returns the image and its geometry.

    PIL's area filter (``BOX``) to shrink, bicubic to enlarge: OpenCV's ``INTER_AREA`` / ``INTER_CUBIC``
    choice, in a library every transformers install has, so an export computes the same pixels without OpenCV.
    """
    from PIL import Image
    geom = SquareGeometry(img.shape[0], img.shape[1], size)
    sq = pad_to_square(img, pad_value)
    if geom.side == size:
        return (sq.copy() if sq is img else sq), geom
    resample = Image.Resampling.BOX if geom.side > size else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(np.ascontiguousarray(sq)).resize((size, size), resample)), geom
