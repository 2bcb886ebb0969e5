"""OCR: the paper's PaddleOCR family through RapidOCR's ONNX runtime (PP-OCR det/rec/cls ship inside the
``rapidocr-onnxruntime`` wheel: offline, CPU). Each recognised line becomes a ``kind: 'text'`` region whose
caption is its transcription; OCR sources get no global caption (as in the paper)."""
from typing import List, Sequence

import numpy as np

from granvit_mm.datasets.converters.common import polygon_to_xyxy
from granvit_mm.registry import DATA_ENGINE_STAGES

from .stage import Stage


@DATA_ENGINE_STAGES.register_module()
class RapidOCRText(Stage):
    """Text regions for images whose source is in ``sources``.

    Args:
        sources: the document sources (OCR runs on them only; the detector skips them).
        min_score: recognition confidence below which a line is dropped.
        max_per_image: keep at most this many lines (reading order).
        engine_kwargs: passed to ``rapidocr_onnxruntime.RapidOCR`` (e.g. ``dict(text_score=0.5)``).
    """
    name = 'ocr'

    def __init__(self, sources: Sequence[str] = ('ocr', ), min_score: float = 0.5, max_per_image: int = 100,
                 engine_kwargs: dict = None) -> None:
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime import RapidOCR
        self.sources = set(sources)
        self.min_score, self.max_per_image = float(min_score), int(max_per_image)
        self.engine = RapidOCR(**(engine_kwargs or {}))
        self.tag = f'rapidocr-onnxruntime:{getattr(rapidocr_onnxruntime, "__version__", "1.4.4")}'

    def wants(self, item: dict) -> bool:
        return item['source'] in self.sources and not item['given_boxes']

    def provenance(self) -> dict:
        return dict(model=self.tag, min_score=self.min_score, max_per_image=self.max_per_image)

    def read(self, rgb: np.ndarray) -> List[dict]:
        result, _ = self.engine(np.ascontiguousarray(rgb[..., ::-1]))  # RapidOCR works on BGR (cv2)
        regions = []
        for quad, text, score in result or []:
            text = ' '.join(str(text).split())
            if text and float(score) >= self.min_score:
                regions.append(dict(bbox=[round(v, 2) for v in polygon_to_xyxy(quad)], caption=text,
                                    kind='text'))
        return regions[:self.max_per_image]

    def process(self, items: List[dict]) -> None:
        for it in items:
            it['regions'] = self.read(it['pixels'])
            it['provenance']['boxes'] = self.tag
