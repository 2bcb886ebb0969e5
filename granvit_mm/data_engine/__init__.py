"""The data engine: raw images -> Gran JSONL shards, the way the paper built Gran-29M (docs/data_engine.md).

Stages are registered in ``DATA_ENGINE_STAGES`` (scope ``granvit``) and chained by a config
(configs/data_engine/): ``DecodeImages`` (ingest) -> ``MMDetBoxes`` (mmdet's DetInferencer) and/or
``RapidOCRText`` (PP-OCR via ONNX) -> ``PaperFilters`` -> ``CaptionRegions`` (backends: ``GranViTCaptioner``,
``HFVLMCaptioner``, ``OpenAICaptioner``) -> the writer (the reader's validator, atomic shards, a manifest).
``run_engine`` plans shards and runs them in a loop, a process pool or Ray Data; finished shards are skipped
on rerun.
"""
from .captioner import CaptionRegions, GranViTCaptioner, HFVLMCaptioner, OpenAICaptioner
from .decode import DecodeImages
from .detector import MMDetBoxes
from .filters import PaperFilters
from .item import make_item, reject
from .ocr import RapidOCRText
from .pipeline import DataEngine
from .runner import run_engine
from .stage import Stage

__all__ = [
    'DataEngine', 'run_engine', 'Stage', 'DecodeImages', 'MMDetBoxes', 'RapidOCRText', 'PaperFilters',
    'CaptionRegions', 'GranViTCaptioner', 'HFVLMCaptioner', 'OpenAICaptioner', 'make_item', 'reject'
]
