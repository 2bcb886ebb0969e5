"""OCR sources -> Gran ``text`` regions (global caption null, as in Gran-29M's OCR part).

Supported inputs:
- ICDAR-2015 style: ``gt_img_N.txt`` per image, lines ``x1,y1,x2,y2,x3,y3,x4,y4,transcription``
  (transcriptions may contain commas; ``###`` = don't care, skipped); image ``img_N.{jpg,png}``.
- TextOCR json: ``imgs`` (id -> file_name, width, height), ``anns`` (bbox xywh, ``utf8_string``; ``.`` =
  illegible, skipped), ``img2Anns``.
- PaddleOCR, two result formats:
  * PPOCRLabel's ``Label.txt``: ``path\\t[{"transcription": ..., "points": [[x, y], ...], "difficult": ...}]``
    (``###`` or difficult skipped);
  * the return value of PaddleOCR 2.x ``ocr(img)`` saved as JSON, one file mapping image path -> result,
    where a result is ``[[points, [text, score]], ...]`` or that list wrapped in a per-page list
    (``[[...]]``, as ``ocr()`` returns it); PaddleOCR 3.x ``predict()`` results saved with ``save_to_json``
    (dicts with ``rec_texts``, ``rec_scores``, ``rec_polys``) are read too. Lines below ``min_score`` are
    skipped.
Quadrilaterals become their axis-aligned hull. Image sizes are read from the image headers (ICDAR as raw
pixels, PaddleOCR with EXIF applied, as OpenCV/PaddleOCR load them).
"""
import glob
import json
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from granvit_mm.core.gran_record import make_record

from .common import image_size, polygon_to_xyxy, xywh_to_xyxy

ICDAR_DONT_CARE = '###'
TEXTOCR_ILLEGIBLE = '.'


def parse_icdar2015_line(line: str) -> Optional[Tuple[List[float], str]]:
    """``x1,y1,...,y4,text`` -> (xyxy hull, text); None for blank lines."""
    line = line.strip().lstrip('\ufeff')
    if not line:
        return None
    parts = line.split(',')
    if len(parts) < 9:
        raise ValueError(f'expected 8 coordinates and a transcription, got {line!r}')
    coords = [float(v) for v in parts[:8]]
    text = ','.join(parts[8:]).strip()
    return polygon_to_xyxy(list(zip(coords[0::2], coords[1::2]))), text


def _find_image(img_dir: str, stem: str) -> Optional[str]:
    for ext in ('.jpg', '.png', '.jpeg', '.JPG', '.PNG', '.gif', '.bmp'):
        if osp.isfile(osp.join(img_dir, stem + ext)):
            return stem + ext
    return None


def convert_icdar2015(img_dir: str,
                      gt_dir: str,
                      img_prefix: str = '',
                      source: str = 'icdar2015',
                      keep_dont_care: bool = False) -> Iterator[dict]:
    """One record per ``gt_img_*.txt``; images without a gt file are not listed."""
    for gt in sorted(glob.glob(osp.join(gt_dir, 'gt_*.txt'))):
        stem = osp.basename(gt)[3:-4]  # gt_img_12.txt -> img_12
        name = _find_image(img_dir, stem)
        if name is None:
            continue
        regions = []
        with open(gt, encoding='utf-8-sig') as f:
            for line in f:
                parsed = parse_icdar2015_line(line)
                if parsed is None or (parsed[1] == ICDAR_DONT_CARE and not keep_dont_care):
                    continue
                regions.append(dict(bbox=parsed[0], caption=parsed[1], kind='text'))
        w, h = image_size(osp.join(img_dir, name), exif=False)
        yield make_record(img_prefix + name, w, h, regions, None, source)


def convert_textocr(data: dict, img_prefix: str = '', source: str = 'textocr') -> Iterator[dict]:
    """One record per image of a TextOCR json (``TextOCR_0.1_train.json``)."""
    anns = data['anns']
    img2anns = data.get('img2Anns')
    if img2anns is None:
        img2anns = {}
        for ann_id, ann in anns.items():
            img2anns.setdefault(ann['image_id'], []).append(ann_id)
    for img_id in sorted(data['imgs']):
        im = data['imgs'][img_id]
        regions = []
        for ann_id in img2anns.get(img_id, []):
            ann = anns[ann_id]
            text = str(ann.get('utf8_string', '')).strip()
            if not text or text == TEXTOCR_ILLEGIBLE:
                continue
            regions.append(dict(bbox=xywh_to_xyxy(ann['bbox']), caption=text, kind='text'))
        yield make_record(img_prefix + im['file_name'], im['width'], im['height'], regions, None, source)


def parse_ppocr_label_line(line: str) -> Optional[Tuple[str, List[dict]]]:
    """``path\\t[json]`` -> (path, entries); None for blank lines."""
    line = line.rstrip('\n')
    if not line.strip():
        return None
    path, sep, payload = line.partition('\t')
    if not sep:
        raise ValueError(f'expected "path<TAB>[json]", got {line[:80]!r}')
    return path.strip(), json.loads(payload)


def convert_ppocr_label(label_file: str,
                        img_root: str,
                        img_prefix: str = '',
                        source: str = 'paddleocr',
                        skip_difficult: bool = True) -> Iterator[dict]:
    """PPOCRLabel ``Label.txt``; image paths in it are relative to ``img_root``."""
    with open(label_file, encoding='utf-8') as f:
        for line in f:
            parsed = parse_ppocr_label_line(line)
            if parsed is None:
                continue
            path, entries = parsed
            regions = []
            for e in entries:
                text = str(e.get('transcription', '')).strip()
                if not text or text == ICDAR_DONT_CARE or (skip_difficult and e.get('difficult')):
                    continue
                regions.append(dict(bbox=polygon_to_xyxy(e['points']), caption=text, kind='text'))
            w, h = image_size(osp.join(img_root, path))
            yield make_record(img_prefix + path, w, h, regions, None, source)


def paddle_result_lines(result) -> List[Tuple[list, str, float]]:
    """(polygon, text, score) of one image's PaddleOCR result, in any of the supported layouts."""
    if isinstance(result, dict):  # PaddleOCR 3.x predict() -> save_to_json
        res = result.get('res', result)
        polys = res.get('rec_polys') or res.get('dt_polys') or []
        return [(p, t, float(s))
                for p, t, s in zip(polys, res.get('rec_texts', []), res.get('rec_scores', []))]
    if result is None:
        return []
    if result and isinstance(result[0], list) and result[0] and _is_line(result[0][0]):
        result = [line for page in result if page for line in page]  # [[line, ...]] per page
    return [(line[0], str(line[1][0]), float(line[1][1])) for line in result if _is_line(line)]


def _is_line(obj) -> bool:
    """``[points, [text, score]]``."""
    return (isinstance(obj, (list, tuple)) and len(obj) == 2 and isinstance(obj[1], (list, tuple))
            and len(obj[1]) == 2 and isinstance(obj[1][0], str))


def convert_paddle_json(results: Dict[str, object],
                        img_root: str,
                        img_prefix: str = '',
                        source: str = 'paddleocr',
                        min_score: float = 0.5) -> Iterator[dict]:
    """``{image path relative to img_root: PaddleOCR result}`` -> records."""
    for path in sorted(results):
        regions = [
            dict(bbox=polygon_to_xyxy(poly), caption=text.strip(), kind='text')
            for poly, text, score in paddle_result_lines(results[path]) if text.strip() and score >= min_score
        ]
        w, h = image_size(osp.join(img_root, path))
        yield make_record(img_prefix + path, w, h, regions, None, source)


def load_paddle_json(paths: Sequence[str]) -> Dict[str, object]:
    """Merge result files: a dict {path: result}, or PaddleOCR 3.x per-image jsons (``input_path`` key)."""
    merged: Dict[str, object] = {}
    for p in paths:
        with open(p, encoding='utf-8') as f:
            data = json.load(f)
        if isinstance(data, dict) and ('rec_texts' in data or 'res' in data):
            res = data.get('res', data)
            merged[osp.basename(res.get('input_path', p))] = data
        else:
            merged.update(data)
    return merged
