"""Geometric transforms that move the boxes with the pixels.

``GranSquareResize`` is the paper's pad-to-square + resize, through ``granvit_mm.core.geometry`` (the
one implementation shared with inference and the HF image processor). ``GranRandomFlip`` is off by default;
when on, it mirrors boxes and swaps left/right words so captions stay true, and leaves images with text
regions alone (mirrored text is not text).
"""
import re
from typing import Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from granvit_mm.core.geometry import square_resize
from granvit_mm.core.image_input import PAD_VALUE
from granvit_mm.registry import TRANSFORMS

DEFAULT_SWAP_WORDS = (('left', 'right'), ('leftmost', 'rightmost'), ('lefthand', 'righthand'))


@TRANSFORMS.register_module()
class GranSquareResize(BaseTransform):
    """Pad right/bottom to a square with ``pad_val`` and resize to ``size`` x ``size``.

    Sets ``img``, ``img_shape`` (S, S), ``scale_factor`` (s, s), ``gt_bboxes`` (model-input pixels) and
    ``gt_bboxes_norm`` ([0, 1] relative to the padded square: what box text encodes).
    Default pad colour (127, 127, 127) is about SigLIP's mean, so padding normalises to ~0.
    """

    def __init__(self, size: int = 512, pad_val: Sequence[int] = PAD_VALUE) -> None:
        self.size = int(size)
        self.pad_val = tuple(int(v) for v in pad_val)

    def transform(self, results: dict) -> dict:
        img, geom = square_resize(results['img'], self.size, self.pad_val)
        boxes = np.asarray(results.get('gt_bboxes', np.zeros((0, 4))), np.float32).reshape(-1, 4)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (geom.scale, geom.scale)
        results['gt_bboxes'] = geom.to_input(boxes)
        results['gt_bboxes_norm'] = geom.to_normalized(boxes)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size}, pad_val={self.pad_val})'


def swap_words(text: str, pairs: Sequence[Tuple[str, str]] = DEFAULT_SWAP_WORDS) -> str:
    """Swap each pair's words (whole words, case kept: Left <-> Right, LEFT <-> RIGHT)."""
    table = {}
    for a, b in pairs:
        table[a.lower()], table[b.lower()] = b.lower(), a.lower()
    pattern = re.compile(
        r'\b(' + '|'.join(re.escape(w) for w in sorted(table, key=len, reverse=True)) + r')\b', re.IGNORECASE)

    def repl(m: 're.Match') -> str:
        word, new = m.group(0), table[m.group(0).lower()]
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new

    return pattern.sub(repl, text)


@TRANSFORMS.register_module()
class GranRandomFlip(BaseTransform):
    """Horizontal flip with probability ``prob`` (default 0: off), before ``GranSquareResize``.

    Mirrors ``img`` and ``gt_bboxes`` (original pixels), swaps left/right words in the global and region
    captions, and never flips an image with a ``text`` region. The draw is seeded by (seed, epoch,
    sample_idx) so that it is reproducible.
    """

    def __init__(self,
                 prob: float = 0.0,
                 seed: int = 0,
                 swap_pairs: Sequence[Tuple[str, str]] = DEFAULT_SWAP_WORDS) -> None:
        self.prob = float(prob)
        self.seed = int(seed)
        self.swap_pairs = tuple(tuple(p) for p in swap_pairs)

    def transform(self, results: dict) -> dict:
        rng = np.random.default_rng(
            [self.seed, 7, int(results.get('epoch', 0)),
             int(results.get('sample_idx', 0))])
        results['flip'] = False
        if self.prob <= 0 or 'text' in results.get('region_kinds', []) or rng.random() >= self.prob:
            return results
        w = results['img'].shape[1]
        results['img'] = np.ascontiguousarray(results['img'][:, ::-1])
        boxes = np.asarray(results['gt_bboxes'], np.float32).reshape(-1, 4).copy()
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        results['gt_bboxes'] = boxes
        results['region_captions'] = [swap_words(c, self.swap_pairs) for c in results['region_captions']]
        if results.get('caption'):
            results['caption'] = swap_words(results['caption'], self.swap_pairs)
        results['flip'] = True
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob}, seed={self.seed})'
