"""Shared pieces of the source -> Gran JSONL converters: the validating sharded writer, box helpers,
image sizes, progress bars and a pickle loader that cannot run code."""
import os
import os.path as osp
import pickle
from collections import Counter
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from granvit_mm.core.gran_record import (BadRecordError, ValidationRules, dump_record, make_record,
                                         validate_record)

CONVERTER_RULES = ValidationRules(bad_region='drop', allow_empty_regions=False)


def track(iterable: Iterable, total: Optional[int] = None, desc: str = '') -> Iterator:
    """A progress bar (tqdm; mmengine's ProgressBar if tqdm is missing)."""
    try:
        from tqdm import tqdm
        yield from tqdm(iterable, total=total, desc=desc, mininterval=1.0, dynamic_ncols=True)
        return
    except ImportError:
        pass
    from mmengine.utils import ProgressBar
    bar = ProgressBar(total or 0)
    for item in iterable:
        yield item
        bar.update()


def xywh_to_xyxy(box: Sequence[float]) -> List[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def polygon_to_xyxy(points: Sequence[Sequence[float]]) -> List[float]:
    """Axis-aligned hull of a polygon (quads of ICDAR, PaddleOCR, TextOCR)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]


def image_size(path: str, exif: bool = True) -> Tuple[int, int]:
    """(width, height) from the image header; with ``exif`` as displayed (EXIF rotations 5-8 swap w/h)."""
    from PIL import Image
    with Image.open(path) as img:
        w, h = img.size
        if exif and img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


class _BasicTypesUnpickler(pickle.Unpickler):
    """The refer API's pickles hold only dicts, lists, strings and numbers: refuse anything else (a pickle
    from the internet must not be able to run code)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f'refusing to load {module}.{name} from a data pickle')


def load_basic_pickle(path: str):
    """Load a pickle of plain Python data (Python 2 pickles too)."""
    with open(path, 'rb') as f:
        data = f.read()
    import io
    try:
        return _BasicTypesUnpickler(io.BytesIO(data)).load()
    except UnicodeDecodeError:
        return _BasicTypesUnpickler(io.BytesIO(data), encoding='latin1').load()


class GranWriter:
    """Validate records and write them as (sharded) Gran JSONL.

    Every record goes through the same ``validate_record`` as training (with ``bad_region='drop'``): what a
    converter writes, GranDataset reads. Boxes are written clipped; bad regions and records are counted per
    reason in ``stats``.

    Args:
        out_file: ``path/name.jsonl``; with ``max_lines`` > 0 the shards are ``path/name-00000.jsonl``, ...
        max_lines: lines per shard (0: one file).
    """

    def __init__(self, out_file: str, max_lines: int = 0, rules: ValidationRules = CONVERTER_RULES) -> None:
        self.out_file, self.max_lines, self.rules = out_file, max_lines, rules
        self.stats: Counter = Counter()
        self.files: List[str] = []
        self._fh = None
        self._lines_in_shard = 0
        os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)

    def _next_shard(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self.max_lines > 0:
            stem = self.out_file[:-6] if self.out_file.endswith('.jsonl') else self.out_file
            path = f'{stem}-{len(self.files):05d}.jsonl'
        else:
            path = self.out_file
        self._fh = open(path, 'w', encoding='utf-8')
        self.files.append(path)
        self._lines_in_shard = 0

    def write(self, rec: dict) -> bool:
        """Validate and write one record; returns False (and counts why) when it was rejected."""
        self.stats['records_in'] += 1
        self.stats['regions_in'] += len(rec.get('regions') or [])
        try:
            clean, dropped = validate_record(rec, self.rules)
        except BadRecordError as err:
            self.stats[f'records_rejected:{err.reason}'] += 1
            return False
        for err in dropped:
            self.stats[f'regions_dropped:{err.reason}'] += 1
        regions = [
            dict(bbox=b.tolist(), caption=c, kind=k)
            for b, c, k in zip(clean['bboxes'], clean['region_captions'], clean['region_kinds'])
        ]
        out = make_record(clean['image'], clean['width'], clean['height'], regions, clean['caption'],
                          clean['source'])
        if self._fh is None or (self.max_lines > 0 and self._lines_in_shard >= self.max_lines):
            self._next_shard()
        self._fh.write(dump_record(out) + '\n')
        self._lines_in_shard += 1
        self.stats['records_out'] += 1
        self.stats['regions_out'] += len(regions)
        return True

    def close(self) -> dict:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if not self.files:  # still produce the (empty) output file
            self._next_shard()
            self._fh.close()
            self._fh = None
        return dict(self.stats)

    def __enter__(self) -> 'GranWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_records(records: Iterable[dict],
                  out_file: str,
                  max_lines: int = 0,
                  total: Optional[int] = None,
                  desc: str = 'converting',
                  allow_empty_regions: bool = False) -> dict:
    """Drive a record iterator through a progress bar into a GranWriter; returns its stats and files."""
    rules = ValidationRules(bad_region='drop', allow_empty_regions=allow_empty_regions)
    with GranWriter(out_file, max_lines, rules) as writer:
        for rec in track(records, total=total, desc=desc):
            writer.write(rec)
    stats = dict(writer.stats)
    stats['files'] = writer.files
    return stats


def format_stats(stats: dict) -> str:
    keys = sorted(k for k in stats if k != 'files')
    lines = [f'  {k}: {stats[k]}' for k in keys]
    lines.append('  files: ' + ', '.join(stats.get('files', [])))
    return '\n'.join(lines)
