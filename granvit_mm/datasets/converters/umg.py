"""UMG-41M per-image json -> Gran.

UMG-41M's schema is not public here; this is the reading we assume (and document in docs/data.md): one JSON
object per image, either one ``.json`` file per image under a folder or one object per line of a JSONL, with
- the image path: ``image`` | ``file_name`` | ``img_path`` | ``image_path`` | ``path`` (relative to the
  image root);
- the size: ``width`` and ``height``, or ``size``/``image_size`` = [w, h]; if absent it is read from the
  image (then ``img_root`` is needed);
- optionally a global caption: ``caption`` | ``description`` | ``global_caption``;
- the objects: ``objects`` | ``regions`` | ``annotations`` | ``boxes``, each with a box ``bbox`` | ``box``
  (absolute pixels, ``bbox_format`` 'xyxy' (default) or 'xywh'; values in [0, 1] are taken as normalised
  and scaled by the size) and a text ``caption`` | ``description`` | ``phrase`` | ``label`` | ``name``.
Unknown keys are ignored. Objects without a box or text are skipped.
"""
import glob
import json
import os.path as osp
from typing import Iterable, Iterator, List, Optional

from granvit_mm.core.gran_record import make_record

from .common import image_size, xywh_to_xyxy

IMAGE_KEYS = ('image', 'file_name', 'img_path', 'image_path', 'path')
CAPTION_KEYS = ('caption', 'description', 'global_caption')
OBJECT_LIST_KEYS = ('objects', 'regions', 'annotations', 'boxes')
BOX_KEYS = ('bbox', 'box')
TEXT_KEYS = ('caption', 'description', 'phrase', 'label', 'name')


def _first(d: dict, keys) -> Optional[object]:
    for k in keys:
        if d.get(k) not in (None, ''):
            return d[k]
    return None


def _size(entry: dict, img_root: Optional[str], path: str):
    if entry.get('width') and entry.get('height'):
        return int(entry['width']), int(entry['height'])
    size = entry.get('size') or entry.get('image_size')
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    if img_root is None:
        raise ValueError(f'{path}: no width/height in the json and no --img-root to read them from')
    return image_size(osp.join(img_root, path))


def umg_entry_to_record(entry: dict,
                        bbox_format: str = 'xyxy',
                        img_prefix: str = '',
                        img_root: Optional[str] = None,
                        source: str = 'umg') -> dict:
    path = _first(entry, IMAGE_KEYS)
    if not isinstance(path, str):
        raise ValueError(f'no image path under any of {IMAGE_KEYS}: keys are {sorted(entry)}')
    w, h = _size(entry, img_root, path)
    regions: List[dict] = []
    for obj in _first(entry, OBJECT_LIST_KEYS) or []:
        box, text = _first(obj, BOX_KEYS), _first(obj, TEXT_KEYS)
        if box is None or not isinstance(text, str) or not text.strip():
            continue
        box = [float(v) for v in box]
        if bbox_format == 'xywh':
            box = xywh_to_xyxy(box)
        if max(box) <= 1.0:  # normalised coordinates
            box = [box[0] * w, box[1] * h, box[2] * w, box[3] * h]
        regions.append(dict(bbox=box, caption=' '.join(text.split()), kind='object'))
    caption = _first(entry, CAPTION_KEYS)
    return make_record(img_prefix + path, w, h, regions, caption if isinstance(caption, str) else None,
                       source)


def iter_umg_entries(inputs: Iterable[str]) -> Iterator[dict]:
    """Entries from folders of ``*.json`` (recursive), single ``.json`` files, or ``.jsonl`` files."""
    for inp in inputs:
        if osp.isdir(inp):
            files = sorted(glob.glob(osp.join(inp, '**', '*.json'), recursive=True))
        else:
            files = [inp]
        for fp in files:
            with open(fp, encoding='utf-8') as f:
                if fp.endswith('.jsonl'):
                    for line in f:
                        if line.strip():
                            yield json.loads(line)
                else:
                    data = json.load(f)
                    yield from (data if isinstance(data, list) else [data])


def convert_umg(inputs: Iterable[str],
                bbox_format: str = 'xyxy',
                img_prefix: str = '',
                img_root: Optional[str] = None,
                source: str = 'umg') -> Iterator[dict]:
    if bbox_format not in ('xyxy', 'xywh'):
        raise ValueError(f"bbox_format must be 'xyxy' or 'xywh', got {bbox_format!r}")
    for entry in iter_umg_entries(inputs):
        yield umg_entry_to_record(entry, bbox_format, img_prefix, img_root, source)
