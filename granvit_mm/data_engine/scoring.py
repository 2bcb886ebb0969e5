"""Score engine output against reference Gran JSONL (GranSynth's truth in the toy): box recall and precision
at IoU >= 0.5 (one-to-one, greedy by IoU), region-caption ROUGE-L of matched boxes (the project's
``evaluation.metrics.rouge``), and OCR character accuracy of text pages (1 - edit distance / reference length,
over each page's lines in reading order, summed over pages)."""
import json
from typing import Dict, Iterable, List, Tuple

import numpy as np
import torch
from torchvision.ops import box_iou

from granvit_mm.evaluation.metrics.rouge import rouge_l


def read_jsonl(paths: Iterable[str]) -> Dict[str, dict]:
    out = {}
    for p in paths:
        with open(p, encoding='utf-8') as f:
            out.update((r['image'], r) for r in map(json.loads, f) if r)
    return out


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def match(pred: List[List[float]], truth: List[List[float]], thr: float = 0.5) -> List[Tuple[int, int]]:
    """One-to-one (pred, truth) pairs with IoU >= ``thr``, highest IoU first."""
    if not pred or not truth:
        return []
    iou = box_iou(torch.tensor(pred, dtype=torch.float64), torch.tensor(truth, dtype=torch.float64)).numpy()
    pairs, used_p, used_t = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind='stable'):
        p, t = divmod(int(flat), iou.shape[1])
        if iou[p, t] < thr:
            break
        if p not in used_p and t not in used_t:
            pairs.append((p, t))
            used_p.add(p)
            used_t.add(t)
    return pairs


def reading_order(regions: List[dict]) -> str:
    """Text lines top to bottom, left to right (a line is boxes whose centre rows overlap)."""
    boxes = sorted(regions, key=lambda r: ((r['bbox'][1] + r['bbox'][3]) / 2, r['bbox'][0]))
    lines: List[List[dict]] = []
    for r in boxes:
        cy = (r['bbox'][1] + r['bbox'][3]) / 2
        if lines and lines[-1][0]['bbox'][1] <= cy <= lines[-1][0]['bbox'][3]:
            lines[-1].append(r)
        else:
            lines.append([r])
    return '\n'.join(' '.join(x['caption'] for x in sorted(line,
                                                           key=lambda r: r['bbox'][0])) for line in lines)


def score(pred: Dict[str, dict], truth: Dict[str, dict], iou_thr: float = 0.5) -> dict:
    """Scores of ``pred`` records against ``truth`` records (both keyed by image path). Truth images the
    engine did not write count as misses."""
    n_pred = n_truth = n_match = 0
    rouges, ocr_edits, ocr_chars, pages = [], 0, 0, 0
    for image, ref in truth.items():
        got = pred.get(image, dict(regions=[]))
        objs = [r for r in ref['regions'] if r['kind'] == 'object']
        if objs:
            mine = [r for r in got['regions'] if r['kind'] == 'object']
            pairs = match([r['bbox'] for r in mine], [r['bbox'] for r in objs], iou_thr)
            n_pred, n_truth, n_match = n_pred + len(mine), n_truth + len(objs), n_match + len(pairs)
            rouges += [rouge_l(mine[p]['caption'], objs[t]['caption']) for p, t in pairs]
        texts = [r for r in ref['regions'] if r['kind'] == 'text']
        if texts:
            want = reading_order(texts)
            have = reading_order([r for r in got['regions'] if r['kind'] == 'text'])
            ocr_edits += edit_distance(have, want)
            ocr_chars += len(want)
            pages += 1
    return dict(
        images=len(truth), images_written=sum(i in pred for i in truth),
        box_recall=100 * n_match / max(n_truth, 1), box_precision=100 * n_match / max(n_pred, 1),
        boxes_truth=n_truth, boxes_pred=n_pred, boxes_matched=n_match,
        region_caption_rouge_l=100 * float(np.mean(rouges)) if rouges else 0.0,
        ocr_pages=pages, ocr_char_accuracy=100 * max(0.0, 1 - ocr_edits / max(ocr_chars, 1)))
