"""Source dataset -> Gran JSONL conversion (the logic behind tools/dataset_converters/)."""
from .coco import coco_captions_by_image, convert_coco_captions, convert_refcoco, refcoco_eval_image_ids
from .common import GranWriter, format_stats, load_basic_pickle, track, write_records
from .filters import PaperFilter
from .ocr import (convert_icdar2015, convert_paddle_json, convert_ppocr_label, convert_textocr,
                  load_paddle_json)
from .umg import convert_umg
from .visual_genome import convert_visual_genome

__all__ = [
    'GranWriter', 'write_records', 'format_stats', 'track', 'load_basic_pickle', 'convert_refcoco',
    'convert_coco_captions', 'coco_captions_by_image', 'refcoco_eval_image_ids', 'convert_visual_genome',
    'convert_icdar2015', 'convert_textocr', 'convert_ppocr_label', 'convert_paddle_json', 'load_paddle_json',
    'convert_umg', 'PaperFilter'
]
