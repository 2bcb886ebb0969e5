"""The unit that flows through the engine's stages: one input image as a plain dict.

Plain dicts (JSON values plus one transient ``pixels`` array) pickle cheaply, so the same items travel through
the in-process loop, a process pool and Ray Data's object store. Keys:

- ``key``: the input's position in the whole input stream (outputs are written in this order);
- ``path``: the file to read; ``image``: the path written to the record (relative to the run's image root);
- ``source``: the record's source (routes OCR vs detector); ``width``/``height``: set by decoding;
- ``regions``: ``[{'bbox', 'caption', 'kind'}]`` (given by a Gran JSONL input, or made by a stage);
  ``given_boxes``: the input brought its boxes (the detector leaves the item alone);
- ``caption``: the global caption (None for OCR sources); ``pixels``: HxWx3 RGB uint8, dropped before writing;
- ``reject``: None, or ``'<stage>:<reason>'`` (the first stage that refused it; later stages pass it through),
  with ``detail`` saying why in words;
- ``counts``: per-item counters the manifest sums (boxes removed by a filter, captions cut, ...);
- ``flags``: what a stage wants a reader of the record to know (kept in the record's provenance);
- ``provenance``: which component made the boxes and captions.
"""
from typing import Any, Dict, Iterable, List, Optional


def make_item(key: int, path: str, image: str, source: str, regions: Optional[List[dict]] = None,
              width: Optional[int] = None, height: Optional[int] = None) -> Dict[str, Any]:
    return dict(key=int(key), path=path, image=image, source=source, width=width, height=height,
                regions=list(regions or []), given_boxes=regions is not None, caption=None, pixels=None,
                reject=None, detail='', counts={}, flags=[], provenance={})


def reject(item: dict, stage: str, reason: str, detail: str = '') -> None:
    """Mark an item refused by ``stage`` (counted under ``'<stage>:<reason>'`` in the manifest)."""
    if item['reject'] is None:
        item['reject'] = f'{stage}:{reason}'
        item['detail'] = detail
        item['pixels'] = None


def live(items: Iterable[dict]) -> List[dict]:
    return [it for it in items if it['reject'] is None]


def count(item: dict, key: str, n: int = 1) -> None:
    if n:
        item['counts'][key] = item['counts'].get(key, 0) + int(n)
