"""The one place where boxes become text and text becomes boxes.

Boxes reach the LLM only as text (GranViT has no box tokens). Both stages, the metrics and the inference API
call these functions, so a style change is a config change, and formatting and parsing always round-trip.

Styles (all on normalised xyxy boxes, relative to the padded square image):
- ``'decimal3'`` (default): ``[0.125, 0.300, 0.482, 0.911]``
- ``'int999'``: ``[125, 300, 482, 911]`` (0-999 integers)
- ``'xtuner_refcoco'``: ``{<12><30><48><91>}`` (XTuner's RefCOCO 0-99 grid)
"""
import math
import re
from typing import List, Optional, Sequence

BOX_STYLES = ('decimal3', 'int999', 'xtuner_refcoco')

_NUM = r'\s*([-+]?\d+(?:\.\d+)?)\s*'
_PATTERNS = {
    'decimal3': re.compile(r'\[' + ','.join([_NUM] * 4) + r'\]'),
    'int999': re.compile(r'\[' + ','.join([_NUM] * 4) + r'\]'),
    'xtuner_refcoco': re.compile(r'\{' + ''.join([r'<' + _NUM + r'>'] * 4) + r'\}'),
}
_SCALE = {'decimal3': 1.0, 'int999': 999.0, 'xtuner_refcoco': 99.0}


def _check_style(style: str) -> None:
    if style not in BOX_STYLES:
        raise ValueError(f'unknown box style {style!r}; expected one of {BOX_STYLES}')


def format_box(box: Sequence[float], style: str = 'decimal3') -> str:
    """Format a normalised xyxy box (values in [0, 1]) as the text the LLM reads or writes."""
    _check_style(style)
    if len(box) != 4:
        raise ValueError(f'a box needs 4 numbers, got {len(box)}: {box!r}')
    vals = [float(v) for v in box]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f'box has a non-finite value: {box!r}')
    vals = [min(max(v, 0.0), 1.0) for v in vals]
    if style == 'decimal3':
        return '[' + ', '.join(f'{v:.3f}' for v in vals) + ']'
    ints = [int(round(v * _SCALE[style])) for v in vals]
    if style == 'int999':
        return '[' + ', '.join(str(i) for i in ints) + ']'
    return '{' + ''.join(f'<{i}>' for i in ints) + '}'


def parse_box(text: str, style: str = 'decimal3') -> Optional[List[float]]:
    """Return the first box of ``style`` found in ``text`` as normalised xyxy floats, or None.

    None means "did not parse": callers count it as a miss rather than guessing.
    """
    _check_style(style)
    match = _PATTERNS[style].search(text)
    if match is None:
        return None
    vals = [float(g) / _SCALE[style] for g in match.groups()]
    if style == 'decimal3' and any(v > 1.0 for v in vals):
        return None
    return vals


def box_quantum(style: str = 'decimal3') -> float:
    """Largest round-trip error of a coordinate in ``style`` (half a step)."""
    _check_style(style)
    return 0.5 / (1000.0 if style == 'decimal3' else _SCALE[style])
