"""Inputs, streamed: a folder, a text list of paths, or Gran JSONL (boxes kept, captions redone).

Nothing here holds the whole input: a folder is walked one directory listing at a time (sorted, so the order
is the same on every run), a list or a JSONL is read line by line. Each input becomes an *entry*: a small dict
(``path``, ``image``, ``source``, and for Gran JSONL ``regions``/``width``/``height``), or, for a line that
cannot be used, ``{'bad': reason, 'detail': ...}`` so that it is counted, not lost.

List files take one path a line, optionally followed by a TAB and a source name (``pages/0001.png\tocr``);
relative paths are relative to the image root (default: the list's folder). Blank lines and lines starting
with ``#`` are skipped.
"""
import json
import os
import os.path as osp
from typing import Iterator, Optional, Tuple

from granvit_mm.core.gran_record import BadRecordError, ValidationRules, parse_line, validate_record

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif')
# Given boxes are validated as the reader would, but an empty region list is left to the filters to count.
GIVEN_RULES = ValidationRules(bad_region='drop', allow_empty_regions=True)


def input_kind(inp: str) -> str:
    if osp.isdir(inp):
        return 'folder'
    if osp.isfile(inp):
        return 'gran_jsonl' if inp.endswith('.jsonl') else 'list'
    raise FileNotFoundError(f'--input {inp!r}: no such folder or file (give a folder of images, a .txt list '
                            'of paths, or a Gran .jsonl)')


def default_img_root(inp: str) -> str:
    return osp.abspath(inp) if osp.isdir(inp) else osp.dirname(osp.abspath(inp))


def _walk(root: str) -> Iterator[str]:
    """Image files under ``root``, depth first, each directory's entries sorted (one listing in memory)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            yield from _walk(e.path)
        elif e.name.lower().endswith(IMAGE_SUFFIXES):
            yield e.path


def _rel(path: str, img_root: str) -> Tuple[str, str]:
    full = path if osp.isabs(path) else osp.join(img_root, path)
    full = osp.normpath(full)
    rel = osp.relpath(full, img_root)
    return full, (full if rel.startswith('..') else rel)


def iter_entries(inp: str, img_root: Optional[str] = None, source: str = 'images') -> Iterator[dict]:
    """Entries of one input, in a fixed order."""
    kind = input_kind(inp)
    img_root = osp.abspath(img_root or default_img_root(inp))
    if kind == 'folder':
        for path in _walk(osp.abspath(inp)):
            full, rel = _rel(path, img_root)
            yield dict(path=full, image=rel, source=source)
    elif kind == 'list':
        with open(inp, encoding='utf-8') as f:
            for line in f:
                line = line.rstrip('\n').rstrip('\r')
                if not line.strip() or line.lstrip().startswith('#'):
                    continue
                path, _, src = line.partition('\t')
                full, rel = _rel(path.strip(), img_root)
                yield dict(path=full, image=rel, source=src.strip() or source)
    else:
        with open(inp, 'rb') as f:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    yield _gran_entry(raw, n, inp, img_root, source)


def _gran_entry(raw: bytes, line: int, shard: str, img_root: str, source: str) -> dict:
    """A Gran JSONL line -> an entry whose boxes are kept (checked as the training reader checks them)."""
    try:
        clean, dropped = validate_record(parse_line(raw), GIVEN_RULES)
    except BadRecordError as err:
        err.locate(shard, line)
        return dict(bad=f'bad_record_{err.reason}', detail=str(err))
    full, rel = _rel(clean['image'], img_root)
    regions = [dict(bbox=[float(v) for v in b], caption=c, kind=k)
               for b, c, k in zip(clean['bboxes'].tolist(), clean['region_captions'], clean['region_kinds'])]
    entry = dict(path=full, image=rel, source=clean['source'] or source, regions=regions,
                 width=clean['width'], height=clean['height'], caption=clean['caption'])
    if dropped:
        entry['dropped'] = len(dropped)
    return entry


def dump_entry(entry: dict) -> str:
    return json.dumps(entry, ensure_ascii=False, separators=(',', ':'))
