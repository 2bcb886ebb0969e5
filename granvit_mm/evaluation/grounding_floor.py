"""The floors a Caption2Bbox score must clear before it says the model looked at the image.

- the best constant box: one box, fit on the training regions (the training box with the highest Acc@IoU0.5,
  or with the highest mean IoU), answered for every question; what an LLM that learned the box prior and
  nothing else would score at best;
- a random-object oracle: it knows the true boxes of the image's regions but not which one the caption
  names, and picks one of them uniformly; what a model that finds objects but does not read the caption
  scores (in expectation, computed exactly).

Boxes are normalised to the padded square (``SquareGeometry``), as the box text is. Questions are every
region of every record, as ``stage2_eval`` asks them; ``kind`` splits the scores into object and text regions.
"""
from typing import Dict, Iterable, List, Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from granvit_mm.core.geometry import SquareGeometry

__all__ = ['normalised_regions', 'pairwise_iou', 'fit_constant_box', 'constant_box_scores',
           'random_object_scores']


def normalised_regions(records: Iterable[dict]) -> List[Dict[str, object]]:
    """Per record: ``boxes`` (n, 4) in [0, 1] of the padded square and the regions' ``kinds``."""
    out = []
    for rec in records:
        regions = rec.get('regions') or []
        if not regions:
            continue
        geom = SquareGeometry(int(rec['height']), int(rec['width']), 1)
        boxes = geom.to_normalized(np.array([r['bbox'] for r in regions], dtype=np.float64))
        out.append(dict(boxes=boxes.astype(np.float64),
                        kinds=[r.get('kind', 'object') for r in regions]))
    return out


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes (torchvision's ``box_iou``, as the metrics use)."""
    a, b = (torch.as_tensor(np.asarray(x, np.float64).reshape(-1, 4)) for x in (a, b))
    return box_iou(a, b).numpy()


def _scores(ious: np.ndarray, kinds: Sequence[str], iou_thr: float, hits: np.ndarray = None
            ) -> Dict[str, float]:
    """Acc@thr and mIoU (x100), overall and per region kind; ``hits`` overrides ``ious >= thr`` (expected
    hit rates)."""
    hits = (ious >= iou_thr).astype(np.float64) if hits is None else hits
    kinds = np.asarray(kinds)
    out = {f'acc_iou{iou_thr:g}': float(hits.mean() * 100), 'miou': float(ious.mean() * 100),
           'num': int(len(ious))}
    for kind in sorted(set(kinds.tolist())):
        sel = kinds == kind
        out[f'{kind}/acc_iou{iou_thr:g}'] = float(hits[sel].mean() * 100)
        out[f'{kind}/miou'] = float(ious[sel].mean() * 100)
        out[f'{kind}/num'] = int(sel.sum())
    return out


def fit_constant_box(train: Sequence[dict], iou_thr: float = 0.5, criterion: str = 'acc',
                     max_candidates: int = 4000, seed: int = 0) -> np.ndarray:
    """The training box (of up to ``max_candidates`` drawn) with the highest Acc@``iou_thr`` (``criterion=
    'acc'``, ties broken by mean IoU) or mean IoU (``'miou'``) over all training regions."""
    if criterion not in ('acc', 'miou'):
        raise ValueError(f"criterion must be 'acc' or 'miou', not {criterion!r}")
    boxes = np.concatenate([r['boxes'] for r in train])
    cands = boxes
    if len(cands) > max_candidates:
        cands = cands[np.random.default_rng(seed).choice(len(cands), max_candidates, replace=False)]
    ious = pairwise_iou(cands, boxes)
    key = ious.mean(1) if criterion == 'miou' else (ious >= iou_thr).mean(1) + 1e-6 * ious.mean(1)
    return cands[int(np.argmax(key))]


def constant_box_scores(box: Sequence[float], val: Sequence[dict], iou_thr: float = 0.5) -> Dict[str, float]:
    """Scores of answering ``box`` to every val question."""
    boxes = np.concatenate([r['boxes'] for r in val])
    kinds = [k for r in val for k in r['kinds']]
    return _scores(pairwise_iou(np.asarray(box)[None], boxes)[0], kinds, iou_thr)


def random_object_scores(val: Sequence[dict], iou_thr: float = 0.5) -> Dict[str, float]:
    """Expected scores of answering the true box of a uniformly drawn region of the same image."""
    ious, hits, kinds = [], [], []
    for rec in val:
        m = pairwise_iou(rec['boxes'], rec['boxes'])  # row: the asked region, column: the drawn one
        ious.append(m.mean(1))
        hits.append((m >= iou_thr).mean(1))
        kinds += rec['kinds']
    return _scores(np.concatenate(ious), kinds, iou_thr, np.concatenate(hits))
