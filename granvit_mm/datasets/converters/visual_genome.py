"""Visual Genome region descriptions (``region_descriptions.json`` + ``image_data.json``, v1.2) -> Gran.

Image paths come from ``image_data.json``'s url (``.../VG_100K_2/1.jpg`` -> ``VG_100K_2/1.jpg``), the layout
of the official image zips. VG repeats many regions verbatim; exact duplicates (same phrase, same box to the
pixel) are dropped. Boxes outside the image are clipped or dropped by the writer's validation.
"""
from typing import Dict, Iterator, Optional, Sequence

from granvit_mm.core.gran_record import make_record


def vg_image_path(info: dict) -> str:
    url = info.get('url') or ''
    parts = url.rstrip('/').split('/')
    if len(parts) >= 2 and parts[-2].startswith('VG_100K'):
        return f'{parts[-2]}/{parts[-1]}'
    return f"{info.get('image_id', info.get('id'))}.jpg"


def convert_visual_genome(region_descriptions: Sequence[dict],
                          image_data: Sequence[dict],
                          img_prefix: str = '',
                          source: str = 'visual_genome',
                          dedupe: bool = True,
                          max_phrase_words: Optional[int] = None) -> Iterator[dict]:
    """One record per image; each region description is an ``object`` region (global caption null)."""
    infos: Dict[int, dict] = {int(d.get('image_id', d.get('id'))): d for d in image_data}
    for entry in region_descriptions:
        image_id = int(entry.get('id', entry.get('image_id')))
        info = infos.get(image_id)
        if info is None:
            continue
        seen, regions = set(), []
        for r in entry.get('regions', []):
            phrase = ' '.join(str(r.get('phrase', '')).split())
            if not phrase or (max_phrase_words and len(phrase.split()) > max_phrase_words):
                continue
            box = [
                float(r['x']),
                float(r['y']),
                float(r['x']) + float(r['width']),
                float(r['y']) + float(r['height'])
            ]
            key = (phrase.lower(), tuple(round(v) for v in box))
            if dedupe and key in seen:
                continue
            seen.add(key)
            regions.append(dict(bbox=box, caption=phrase, kind='object'))
        yield make_record(img_prefix + vg_image_path(info), info['width'], info['height'], regions, None,
                          source)
