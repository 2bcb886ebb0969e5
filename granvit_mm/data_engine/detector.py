"""Boxes from any mmdet detector through mmdet's own ``DetInferencer`` (the paper's ViTDet is one config).

mmdet's inference (its test pipeline, resize and un-resize) is used as is; this stage only keeps what the
engine wants: scores >= ``score_thr``, class-agnostic NMS at ``nms_iou`` (a region caption does not care for
the class, and two classes on one object would give two captions of the same box), and the best
``max_per_image`` boxes. Items that brought their boxes (Gran JSONL input) and OCR sources are left alone.
"""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.registry import DefaultScope

from granvit_mm.registry import DATA_ENGINE_STAGES

from .stage import Stage


def agnostic_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, score_thr: float, cap: int) -> np.ndarray:
    """Indices kept (best first): score threshold, class-agnostic NMS (mmcv's op), then the cap."""
    from mmcv.ops import nms
    keep = np.flatnonzero(scores >= score_thr)
    if keep.size == 0:
        return keep
    if iou < 1.0:
        _, idx = nms(torch.as_tensor(boxes[keep], dtype=torch.float32),
                     torch.as_tensor(scores[keep], dtype=torch.float32), float(iou))
        keep = keep[idx.numpy()]
    else:
        keep = keep[np.argsort(-scores[keep], kind='stable')]
    return keep[:cap]


@DATA_ENGINE_STAGES.register_module()
class MMDetBoxes(Stage):
    """Detector boxes as ``kind: 'object'`` regions (captions come later).

    Args:
        config: an mmdet config file (or a model name mmdet's inferencer knows).
        checkpoint: its weights (None: random weights, e.g. for timing).
        device: 'cpu', 'cuda', 'cuda:1', ...
        score_thr, nms_iou, max_per_image: what is kept (see the module doc); ``nms_iou=1`` turns NMS off.
        batch_size: images per DetInferencer call.
        skip_sources: sources that get no detector boxes (document images go to OCR).
        scope: the config's default scope if it does not set one.
        seed: seeds the random weights when ``checkpoint`` is None (timing runs and tests stay reproducible
            across processes).
    """
    name = 'boxes'

    def __init__(self, config: str, checkpoint: Optional[str] = None, device: str = 'cpu',
                 score_thr: float = 0.3, nms_iou: float = 0.5, max_per_image: int = 20, batch_size: int = 8,
                 skip_sources: Sequence[str] = ('ocr', ), scope: str = 'mmdet',
                 seed: int = 0) -> None:
        from mmdet.apis import DetInferencer
        self.config, self.checkpoint = config, checkpoint
        self.score_thr, self.nms_iou = float(score_thr), float(nms_iou)
        self.max_per_image = int(max_per_image)
        self.batch_size = int(batch_size)
        self.skip_sources = set(skip_sources)
        if checkpoint is None:
            torch.manual_seed(seed)
        self.scope = scope
        with DefaultScope.overwrite_default_scope(scope):  # DetInferencer sets the global default scope
            self.inferencer = DetInferencer(model=config, weights=checkpoint, device=device, scope=scope,
                                            show_progress=False)
        ckpt = osp.basename(checkpoint) if checkpoint else 'random-weights'
        self.tag = f'mmdet:{osp.splitext(osp.basename(str(config)))[0]}@{ckpt}'

    def wants(self, item: dict) -> bool:
        return not item['given_boxes'] and item['source'] not in self.skip_sources

    def provenance(self) -> dict:
        return dict(model=self.tag, score_thr=self.score_thr, nms_iou=self.nms_iou,
                    max_per_image=self.max_per_image)

    def detect(self, images: List[np.ndarray]) -> List[tuple]:
        """RGB images -> [(boxes (N, 4) xyxy in the image's pixels, scores (N,))] before our filtering."""
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]  # mmdet treats arrays as BGR (cv2)
        with DefaultScope.overwrite_default_scope(self.scope):  # leaves the caller's default scope as it was
            out = self.inferencer(bgr, batch_size=self.batch_size, return_datasamples=True,
                                  no_save_pred=True, no_save_vis=True, return_vis=False)
        res = []
        for sample in out['predictions']:
            inst = sample.pred_instances
            res.append((inst.bboxes.detach().cpu().numpy().astype(np.float64),
                        inst.scores.detach().cpu().numpy().astype(np.float64)))
        return res

    def process(self, items: List[dict]) -> None:
        for it, (boxes, scores) in zip(items, self.detect([it['pixels'] for it in items])):
            keep = agnostic_nms(boxes, scores, self.nms_iou, self.score_thr, self.max_per_image)
            it['regions'] = [dict(bbox=[round(float(v), 2) for v in boxes[k]], caption='', kind='object',
                                  score=round(float(scores[k]), 4)) for k in keep]
            it['provenance']['boxes'] = self.tag
