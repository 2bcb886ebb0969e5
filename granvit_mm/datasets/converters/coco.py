"""COCO sources: RefCOCO / RefCOCO+ / RefCOCOg referring expressions (refer API files) as region captions,
and COCO captions as global captions.

RefCOCO's val/test images are COCO train2014 images, which are also in train2017: training on COCO captions
of train2017 shows the model the RefCOCO evaluation images. ``refcoco_eval_image_ids`` gives the ids to
exclude (``exclude_image_ids``).
"""
from collections import defaultdict
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set

from granvit_mm.core.gran_record import make_record

from .common import xywh_to_xyxy


def refcoco_eval_image_ids(refs: Sequence[dict], train_splits: Sequence[str] = ('train', )) -> Set[int]:
    """Image ids used by any non-train split of a refs list."""
    return {int(r['image_id']) for r in refs if r.get('split') not in train_splits}


def _ref_sentences(ref: dict, text_field: str, sentences: str) -> List[str]:
    out: List[str] = []
    for s in ref.get('sentences', []):
        text = str(s.get(text_field) or s.get('sent') or s.get('raw') or '').strip()
        if text and text not in out:
            out.append(text)
    return out[:1] if sentences == 'first' else out


def convert_refcoco(refs: Sequence[dict],
                    instances: dict,
                    splits: Sequence[str] = ('train', ),
                    text_field: str = 'sent',
                    sentences: str = 'all',
                    img_prefix: str = '',
                    source: str = 'refcoco',
                    captions: Optional[Dict[int, str]] = None) -> Iterator[dict]:
    """One record per image of the chosen ``splits``; each referring expression is an ``object`` region.

    Args:
        refs: the unpickled ``refs(unc).p`` / ``refs(umd).p`` / ``refs(google).p`` list.
        instances: the matching ``instances.json`` (images with sizes, annotations with xywh boxes).
        text_field: ``'sent'`` (tokenised, lower case) or ``'raw'`` (as typed by the annotator).
        sentences: ``'all'`` (each sentence a region on the same box) or ``'first'``.
        captions: image id -> global caption (e.g. from ``coco_captions_by_image``); else null.
    """
    if sentences not in ('all', 'first'):
        raise ValueError(f"sentences must be 'all' or 'first', got {sentences!r}")
    images = {int(im['id']): im for im in instances['images']}
    anns = {int(a['id']): a for a in instances['annotations']}
    by_image: Dict[int, List[dict]] = defaultdict(list)
    for ref in refs:
        if ref.get('split') in splits:
            by_image[int(ref['image_id'])].append(ref)
    for image_id in sorted(by_image):
        im = images[image_id]
        regions = []
        for ref in by_image[image_id]:
            ann = anns.get(int(ref['ann_id']))
            if ann is None:
                continue
            box = xywh_to_xyxy(ann['bbox'])
            regions.extend(
                dict(bbox=box, caption=s, kind='object') for s in _ref_sentences(ref, text_field, sentences))
        yield make_record(img_prefix + im['file_name'], im['width'], im['height'], regions,
                          (captions or {}).get(image_id), source)


def coco_captions_by_image(captions_json: dict, pick: str = 'longest') -> Dict[int, str]:
    """image id -> one caption (``'longest'``, the most detailed of the five, or ``'first'``)."""
    if pick not in ('longest', 'first'):
        raise ValueError(f"pick must be 'longest' or 'first', got {pick!r}")
    grouped: Dict[int, List[str]] = defaultdict(list)
    for ann in captions_json['annotations']:
        text = ' '.join(str(ann['caption']).split())
        if text:
            grouped[int(ann['image_id'])].append(text)
    if pick == 'first':
        return {k: v[0] for k, v in grouped.items()}
    return {k: max(v, key=len) for k, v in grouped.items()}


def convert_coco_captions(
    captions_json: dict,
    instances: Optional[dict] = None,
    pick: str = 'longest',
    img_prefix: str = '',
    source: str = 'coco_captions',
    exclude_image_ids: Iterable[int] = (),
) -> Iterator[dict]:
    """One record per captioned image; regions from ``instances`` (category names as region captions,
    crowd boxes skipped), or none (read with ``rules=dict(allow_empty_regions=True)``)."""
    caps = coco_captions_by_image(captions_json, pick)
    exclude = set(int(i) for i in exclude_image_ids)
    regions_by_image: Dict[int, List[dict]] = defaultdict(list)
    if instances is not None:
        names = {int(c['id']): c['name'] for c in instances['categories']}
        for ann in instances['annotations']:
            if not ann.get('iscrowd', 0):
                regions_by_image[int(ann['image_id'])].append(
                    dict(
                        bbox=xywh_to_xyxy(ann['bbox']), caption=names[int(ann['category_id'])],
                        kind='object'))
    for im in sorted(captions_json['images'], key=lambda im: int(im['id'])):
        image_id = int(im['id'])
        if image_id in exclude or image_id not in caps:
            continue
        yield make_record(img_prefix + im['file_name'], im['width'], im['height'], regions_by_image[image_id],
                          caps[image_id], source)
