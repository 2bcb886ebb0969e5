"""Many images at once: inputs from an image, a folder or a Gran JSONL; results to ``results.jsonl`` plus
pictures.

The orchestration of ``tools/infer.py`` (as mmpretrain's inferencers keep theirs): batches, one line per
image, the drawn answers under ``<out_dir>/vis``, feature views under ``<out_dir>/features``, mmengine's
progress bar. A bad image is one line with ``"error"`` and the run goes on; a batch with a bad image is
retried image by image so that only the bad one fails. A Gran JSONL input asks about its own regions and
writes their truth beside the answers (for grounding: the true box and the IoU).
"""
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .drawing import draw_result
from .errors import InferenceInputError
from .inputs import list_images, load_image

__all__ = ['InferenceItem', 'RunSummary', 'read_items', 'ask_all', 'features_all', 'add_truth', 'thumbnail']


@dataclass
class InferenceItem:
    """One image to process: where it is, what to ask, and the truth a Gran record gives."""
    path: str
    name: str
    boxes: Optional[list] = None
    phrases: Optional[list] = None
    truth: Optional[dict] = None


@dataclass
class RunSummary:
    """What a run did: images, failures, where the results are; for grounding of a JSONL, the accuracy."""
    total: int
    failed: int
    results: str
    ious: List[Optional[float]] = field(default_factory=list)

    @property
    def acc_iou50(self) -> Optional[float]:
        """Acc@IoU0.5 (%) of the grounded records' regions; None without truth."""
        if not self.ious:
            return None
        return 100.0 * sum(1 for v in self.ious if v is not None and v >= 0.5) / len(self.ious)


def read_items(source: str, img_root: Optional[str] = None,
               limit: Optional[int] = None) -> List[InferenceItem]:
    """An image file, a folder of images or a Gran JSONL -> items (JSONL: its regions as questions, truth)."""
    if osp.isdir(source):
        items = [InferenceItem(p, osp.splitext(osp.basename(p))[0]) for p in list_images(source)]
    elif source.endswith('.jsonl') and osp.isfile(source):
        items = list(_jsonl_items(source, img_root))
    elif osp.isfile(source):
        items = [InferenceItem(source, osp.splitext(osp.basename(source))[0])]
    else:
        raise InferenceInputError(f'input not found: {source!r} (an image, a folder of images or a .jsonl)')
    if not items:
        raise InferenceInputError(f'no images in {source!r}')
    return items[:limit] if limit else items


def _jsonl_items(path: str, img_root: Optional[str]) -> Iterator[InferenceItem]:
    from granvit_mm.core.gran_record import BadRecordError, parse_line
    root = img_root or next((d for d in (osp.join(osp.dirname(osp.dirname(osp.abspath(path))), 'images'),
                                         osp.dirname(osp.abspath(path))) if osp.isdir(d)))
    with open(path, 'rb') as f:
        for i, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                rec = parse_line(raw)
            except BadRecordError as e:
                raise InferenceInputError(f'{path} line {i + 1}: {e}') from None
            regions = rec.get('regions') or []
            stem = osp.splitext(osp.basename(str(rec.get('image', i))))[0]
            yield InferenceItem(osp.join(root, str(rec.get('image', ''))), f'{i:06d}_{stem}',
                                boxes=[r['bbox'] for r in regions], phrases=[r['caption'] for r in regions],
                                truth=dict(caption=rec.get('caption'), regions=regions))


def _progress(total: int, enabled: bool):
    """mmengine's progress bar for more than one image, else nothing."""
    if not enabled or total <= 1:
        return None
    from mmengine.utils import ProgressBar
    return ProgressBar(total, file=sys.stdout)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


def ask_all(inferencer, items: List[InferenceItem], out_dir: str, task: str, boxes: Optional[list] = None,
            phrases: Optional[list] = None, global_caption: bool = False, batch_size: int = 4,
            draw: bool = True, progress: bool = True) -> RunSummary:
    """Ask ``task`` ('caption': boxes and/or the global caption; 'ground': phrases) about every item.

    ``boxes`` / ``phrases`` are asked of every image; without them a JSONL item asks about its own regions.
    """
    if task not in ('caption', 'ground'):
        raise ValueError(f"task must be 'caption' or 'ground', got {task!r}")
    for item in items:
        if task == 'caption':
            item.boxes, item.phrases = (boxes if boxes is not None else item.boxes), None
        else:
            item.phrases, item.boxes = (phrases if phrases is not None else item.phrases), None
    if task == 'caption' and not global_caption and not any(i.boxes for i in items):
        raise InferenceInputError('nothing to ask: give boxes and/or the global caption (a Gran JSONL input '
                                  'asks about its regions)')
    if task == 'ground' and not any(i.phrases for i in items):
        raise InferenceInputError('nothing to ground: give phrases (a Gran JSONL input grounds its captions)')
    os.makedirs(osp.join(out_dir, 'vis'), exist_ok=True)
    summary = RunSummary(len(items), 0, osp.join(out_dir, 'results.jsonl'))
    bar = _progress(len(items), progress)
    with open(summary.results, 'w', encoding='utf-8') as out:
        for chunk in _chunks(items, batch_size):
            for item, result in zip(chunk, _ask_chunk(inferencer, chunk, global_caption)):
                result = dict(result, image=item.path)
                summary.failed += 'error' in result
                if 'error' not in result:
                    if item.truth is not None:
                        add_truth(result, item.truth)
                        summary.ious += [g['iou'] for g in result.get('grounding', []) if 'gt_bbox' in g]
                    if draw:
                        drawn = draw_result(inferencer.load(item.path), result)
                        Image.fromarray(drawn).save(osp.join(out_dir, 'vis', item.name + '.png'))
                out.write(json.dumps(result, ensure_ascii=False) + '\n')
                if bar is not None:
                    bar.update()
    return summary


def _ask_chunk(inferencer, chunk: Sequence[InferenceItem], global_caption: bool) -> List[dict]:
    """A batch in one forward; if an image in it is bad, each one alone so that only the bad one fails."""
    def run(items):
        return inferencer([i.path for i in items], boxes=[i.boxes or None for i in items],
                          phrases=[i.phrases or None for i in items], global_caption=global_caption,
                          batch_size=len(items))

    try:
        return run(chunk)
    except InferenceInputError as e:
        if len(chunk) == 1:
            return [dict(error=str(e))]
    results = []
    for item in chunk:
        try:
            results += run([item])
        except InferenceInputError as e:
            results.append(dict(error=str(e)))
    return results


def add_truth(result: dict, truth: dict) -> None:
    """Gran record truth beside the answers: region captions, and for grounding the true box and IoU."""
    from granvit_mm.evaluation.metrics.grounding_metric import box_iou_or_zero
    regions = truth['regions']
    for r, t in zip(result.get('regions', []), regions):
        r['gt_caption'] = t['caption']
    for g, t in zip(result.get('grounding', []), regions):
        g['gt_bbox'] = t['bbox']
        g['iou'] = None if g['bbox'] is None else round(box_iou_or_zero(g['bbox'], t['bbox']), 4)
    if 'caption' in result:
        result['gt_caption'] = truth['caption']


def features_all(extractors: Sequence[Tuple[str, object]], items: List[InferenceItem], out_dir: str,
                 view_size: int = 256, save_npy: bool = False, max_pixels: Optional[int] = None,
                 progress: bool = True) -> RunSummary:
    """PCA-to-RGB views of each ``(label, DenseFeatureExtractor)``'s features side by side, one PNG each."""
    from .feature_view import feature_view, side_by_side
    folder = osp.join(out_dir, 'features')
    os.makedirs(folder, exist_ok=True)
    summary = RunSummary(len(items), 0, osp.join(out_dir, 'results.jsonl'))
    bar = _progress(len(items), progress)
    with open(summary.results, 'w', encoding='utf-8') as out:
        for item in items:
            line = dict(image=item.path)
            try:
                image = load_image(item.path, max_pixels)
                panels, labels = [thumbnail(image, view_size)], ['image']
                for label, extractor in extractors:
                    feats = extractor.features([image])[0]
                    panels += feature_view([feats], view_size)
                    labels.append(label)
                    line[label] = dict(shape=list(feats.featmap.shape), image_grid=list(feats.image_grid))
                    if save_npy:
                        np.save(osp.join(folder, f'{item.name}_{label}.npy'), feats.image_features().numpy())
                png = osp.join(folder, item.name + '.png')
                Image.fromarray(side_by_side(panels, labels)).save(png)
                line['view'] = png
            except InferenceInputError as e:
                line['error'] = str(e)
                summary.failed += 1
            out.write(json.dumps(line) + '\n')
            if bar is not None:
                bar.update()
    return summary


def thumbnail(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image scaled so that its longer side is ``max_side``."""
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
