"""The Gran JSONL record: schema, validation and the error that names shard, line and field.

One JSON object per line, one line per image (docs/method.md)::

    {"image": "rel/path.jpg", "width": W, "height": H, "source": "flickr30k", "caption": "..." or null,
     "regions": [{"bbox": [x1, y1, x2, y2], "caption": "...", "kind": "object" | "text"}]}

Boxes are absolute pixels of the original image, xyxy. The rules (``ValidationRules``) decide what is bad
input; a bad record is never repaired into a guess, except for boxes a hair outside the image, which are
clipped (annotators and detectors round to the pixel grid; more than ``clip_tolerance`` px means the box or
the image size is wrong). Extra keys are ignored so the format can grow.
"""
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

REGION_KINDS = ('object', 'text')


class BadRecordError(ValueError):
    """A record (or its image) cannot be trained on. ``reason`` is a short counter key, e.g. ``bbox_nan``."""

    def __init__(self, reason: str, message: str, shard: str = '?', line: int = -1, field: str = '') -> None:
        self.reason, self.message, self.shard, self.line, self.field = reason, message, shard, line, field
        super().__init__(self._text())

    def _text(self) -> str:
        where = f'{self.shard}:{self.line}' if self.line >= 0 else self.shard
        field = f" field '{self.field}'" if self.field else ''
        return f'bad Gran record at {where}{field}: {self.message} [{self.reason}]'

    def locate(self, shard: str, line: int) -> 'BadRecordError':
        """Fill in where the record lives (validation code does not know it)."""
        self.shard, self.line = shard, line
        self.args = (self._text(), )
        return self

    def __reduce__(self):  # survive pickling across dataloader workers
        return (BadRecordError, (self.reason, self.message, self.shard, self.line, self.field))


@dataclass(frozen=True)
class ValidationRules:
    """What counts as bad input. Every value is a dataset config option (``GranDataset(rules=dict(...))``).

    - ``clip_tolerance``: boxes at most this many px outside the image are clipped, beyond it they are bad.
    - ``min_box_size``: a box narrower or shorter than this (px, after clipping) is degenerate (zero-area).
    - ``max_caption_chars`` / ``max_region_caption_chars``: longer captions are bad (a runaway generation or
      a concatenation bug, not a caption; region captions are about 10 words in Gran-29M).
    - ``max_line_bytes``: a longer JSONL line is bad (lost newlines glue records together).
    - ``allow_empty_regions``: the paper keeps only images with at least one box; set True for
      caption-only data.
    - ``bad_region``: ``'record'`` (default) makes one bad region spoil the record (its boxes are suspect);
      ``'drop'`` drops only that region, and the record is bad only if no region is left.
    """
    clip_tolerance: float = 2.0
    min_box_size: float = 1.0
    max_caption_chars: int = 4000
    max_region_caption_chars: int = 300
    max_line_bytes: int = 1 << 20
    allow_empty_regions: bool = False
    bad_region: str = 'record'

    def __post_init__(self):
        if self.bad_region not in ('record', 'drop'):
            raise ValueError(f"bad_region must be 'record' or 'drop', got {self.bad_region!r}")


def parse_line(raw: bytes) -> Dict[str, Any]:
    """bytes of one JSONL line -> dict, or BadRecordError('json')."""
    if raw[:3] == b'\xef\xbb\xbf':  # a UTF-8 BOM that some editors put at the start of a file
        raw = raw[3:]
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRecordError('json', f'malformed JSON ({e})') from None
    if not isinstance(obj, dict):
        raise BadRecordError('json', f'a line must hold a JSON object, got {type(obj).__name__}')
    return obj


def _positive_int(rec: dict, key: str) -> int:
    val = rec.get(key)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) \
            or val <= 0 or int(val) != val:
        raise BadRecordError(f'bad_{key}', f'{key} must be a positive integer, got {val!r}', field=key)
    return int(val)


def _caption(val: Any, field: str, limit: int, required: bool) -> Optional[str]:
    if val is None and not required:
        return None
    if not isinstance(val, str):
        raise BadRecordError(
            'bad_caption', f'caption must be a string, got {type(val).__name__}', field=field)
    val = val.strip()
    if not val:
        if required:
            raise BadRecordError('empty_caption', 'caption is empty', field=field)
        return None
    if len(val) > limit:
        raise BadRecordError(
            'caption_too_long', f'caption has {len(val)} characters (limit {limit})', field=field)
    return val


def _box(val: Any, field: str, width: int, height: int, rules: ValidationRules) -> List[float]:
    if not isinstance(val, (list, tuple)) or len(val) != 4:
        raise BadRecordError(
            'bbox_format', f'bbox must be 4 numbers [x1, y1, x2, y2], got {val!r}', field=field)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in val):
        raise BadRecordError('bbox_format', f'bbox must hold numbers, got {val!r}', field=field)
    x1, y1, x2, y2 = (float(v) for v in val)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise BadRecordError('bbox_nan', f'bbox has a NaN or infinite value: {val!r}', field=field)
    if x2 < x1 or y2 < y1:
        raise BadRecordError(
            'bbox_inverted', f'bbox has x2 < x1 or y2 < y1 (expected xyxy): {val!r}', field=field)
    tol = rules.clip_tolerance
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise BadRecordError(
            'bbox_out_of_image',
            f'bbox {val!r} lies more than {tol:g} px outside the {width}x{height} image',
            field=field)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 < rules.min_box_size or y2 - y1 < rules.min_box_size:
        raise BadRecordError(
            'bbox_degenerate',
            f'bbox {val!r} is narrower or shorter than {rules.min_box_size:g} px (zero-area)',
            field=field)
    return [x1, y1, x2, y2]


def _region(reg: Any, i: int, width: int, height: int,
            rules: ValidationRules) -> Tuple[List[float], str, str]:
    field = f'regions[{i}]'
    if not isinstance(reg, dict):
        raise BadRecordError(
            'bad_region', f'a region must be an object, got {type(reg).__name__}', field=field)
    if 'bbox' not in reg:
        raise BadRecordError('missing_field', 'region has no bbox', field=f'{field}.bbox')
    box = _box(reg['bbox'], f'{field}.bbox', width, height, rules)
    cap = _caption(reg.get('caption'), f'{field}.caption', rules.max_region_caption_chars, required=True)
    kind = reg.get('kind', 'object')
    if kind not in REGION_KINDS:
        raise BadRecordError(
            'bad_kind', f'kind must be one of {REGION_KINDS}, got {kind!r}', field=f'{field}.kind')
    return box, cap, kind


def validate_record(
    rec: Dict[str, Any], rules: ValidationRules = ValidationRules()
) -> Tuple[Dict[str, Any], List[BadRecordError]]:
    """Check a parsed record and return ``(clean, dropped)``.

    ``clean`` holds ``image, width, height, source, caption, bboxes`` (float32 (N, 4), clipped),
    ``region_captions`` and ``region_kinds``; ``dropped`` lists the errors of regions dropped under
    ``bad_region='drop'``. Raises BadRecordError (without shard/line; the caller adds them).
    """
    image = rec.get('image')
    if not isinstance(image, str) or not image.strip():
        raise BadRecordError(
            'missing_field', f'image must be a non-empty path string, got {image!r}', field='image')
    width, height = _positive_int(rec, 'width'), _positive_int(rec, 'height')
    caption = _caption(rec.get('caption'), 'caption', rules.max_caption_chars, required=False)
    regions = rec.get('regions', [])
    if not isinstance(regions, list):
        raise BadRecordError(
            'bad_region', f'regions must be a list, got {type(regions).__name__}', field='regions')
    boxes, caps, kinds, dropped = [], [], [], []
    for i, reg in enumerate(regions):
        try:
            box, cap, kind = _region(reg, i, width, height, rules)
        except BadRecordError as err:
            if rules.bad_region == 'record':
                raise
            dropped.append(err)
            continue
        boxes.append(box)
        caps.append(cap)
        kinds.append(kind)
    if not boxes and not rules.allow_empty_regions:
        why = 'region list is empty' if not regions else f'all {len(regions)} regions were bad'
        raise BadRecordError('no_regions', why, field='regions')
    source = rec.get('source')
    clean = dict(
        image=image,
        width=width,
        height=height,
        source=str(source) if source is not None else '',
        caption=caption,
        bboxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        region_captions=caps,
        region_kinds=kinds)
    return clean, dropped


def make_record(image: str,
                width: int,
                height: int,
                regions: List[dict],
                caption: Optional[str] = None,
                source: str = '') -> Dict[str, Any]:
    """The canonical key order converters write (regions: dicts with bbox, caption, kind)."""
    return dict(
        image=image,
        width=int(width),
        height=int(height),
        source=source,
        caption=caption,
        regions=[
            dict(
                bbox=[round(float(v), 2) for v in r['bbox']],
                caption=r['caption'],
                kind=r.get('kind', 'object')) for r in regions
        ])


def dump_record(rec: Dict[str, Any]) -> str:
    """One JSONL line (no newline); UTF-8 kept readable, compact separators."""
    return json.dumps(rec, ensure_ascii=False, separators=(',', ':'))
