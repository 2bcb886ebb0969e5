"""The paper's Gran-29M filters, with a count of what each rule removed.

Rules, in order (thresholds are options; the paper's values are the defaults):
1. image: shorter side > ``min_short_side`` (448 px);
2. image: aspect ratio w/h in [``min_aspect``, ``max_aspect``] ([1/3, 3]);
3. box: aspect ratio in the same range; 4. box: area > ``min_box_area`` (100^2 px);
5. image: at least one box left.
Box rules apply to the region kinds in ``box_kinds`` (both by default, as in the paper; OCR word boxes often
fail rule 4, so ``box_kinds=('object',)`` keeps small text).
Malformed records count as ``malformed:<reason>``.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from granvit_mm.core.gran_record import BadRecordError, ValidationRules, parse_line, validate_record


@dataclass
class PaperFilter:
    min_short_side: float = 448
    min_aspect: float = 1 / 3
    max_aspect: float = 3.0
    min_box_area: float = 100**2
    box_kinds: Sequence[str] = ('object', 'text')

    def __post_init__(self):
        self.stats: Counter = Counter()

    def _aspect_ok(self, w: float, h: float) -> bool:
        return h > 0 and self.min_aspect <= w / h <= self.max_aspect

    def __call__(self, rec: dict) -> Optional[dict]:
        """The record with failing boxes removed, or None if the image is removed."""
        s = self.stats
        s['images_in'] += 1
        s['boxes_in'] += len(rec['regions'])
        w, h = rec['width'], rec['height']
        if not min(w, h) > self.min_short_side:
            s['images_removed:short_side'] += 1
            return None
        if not self._aspect_ok(w, h):
            s['images_removed:image_aspect'] += 1
            return None
        kept = []
        for r in rec['regions']:
            x1, y1, x2, y2 = r['bbox']
            if r.get('kind', 'object') in self.box_kinds:
                if not self._aspect_ok(x2 - x1, y2 - y1):
                    s['boxes_removed:box_aspect'] += 1
                    continue
                if not (x2 - x1) * (y2 - y1) > self.min_box_area:
                    s['boxes_removed:box_area'] += 1
                    continue
            kept.append(r)
        if not kept:
            s['images_removed:no_boxes'] += 1
            return None
        s['images_out'] += 1
        s['boxes_out'] += len(kept)
        return dict(rec, regions=kept)

    def filter_line(self, raw: bytes) -> Optional[dict]:
        """Parse + validate (bad regions dropped, as converters do) + filter one JSONL line."""
        try:
            clean, _ = validate_record(parse_line(raw), ValidationRules(bad_region='drop'))
        except BadRecordError as err:
            self.stats[f'malformed:{err.reason}'] += 1
            return None
        regions = [
            dict(bbox=b.tolist(), caption=c, kind=k)
            for b, c, k in zip(clean['bboxes'], clean['region_captions'], clean['region_kinds'])
        ]
        rec = dict(
            image=clean['image'],
            width=clean['width'],
            height=clean['height'],
            source=clean['source'],
            caption=clean['caption'],
            regions=regions)
        return self(rec)

    def report(self) -> str:
        s = self.stats
        lines = [
            f"images: {s['images_in']} in, {s['images_out']} out; boxes: {s['boxes_in']} in, "
            f"{s['boxes_out']} out"
        ]
        for key in sorted(k for k in s if ':' in k):
            lines.append(f'  {key}: {s[key]}')
        return '\n'.join(lines)
