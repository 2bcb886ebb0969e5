"""GranSynth's object regions as a COCO detection set (class = one attribute word, the shape by default).

The tiny transfer benchmark of the toy chain: the same images the encoders were pretrained on, their object
boxes, and one attribute as the class, so mmdet's stock ``CocoDataset`` and ``tools/train.py`` train and
evaluate a detector on it with no new code.
"""
import json
import os.path as osp
from typing import List

from granvit_mm.core.gran_record import parse_line

from .gran_synth import ATTRIBUTE_VALUES, object_regions


def gran_synth_to_coco(data_root: str, split: str, out_file: str, class_attr: str = 'shape') -> dict:
    """Write ``out_file`` (COCO json, image paths relative to ``data_root/images``); returns its counts."""
    classes = ATTRIBUTE_VALUES[class_attr]  # category ids follow this order
    images: List[dict] = []
    annotations: List[dict] = []
    with open(osp.join(data_root, 'annotations', f'{split}.jsonl'), 'rb') as f:
        for raw in f:
            rec = parse_line(raw)
            objects = object_regions(rec)
            if not objects:
                continue  # OCR pages: no object to detect
            image_id = len(images) + 1
            images.append(dict(id=image_id, file_name=rec['image'], width=rec['width'], height=rec['height']))
            for (x1, y1, x2, y2), attrs in objects:
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                        category_id=classes.index(attrs[class_attr]) + 1,
                                        bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
                                        iscrowd=0))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=c) for i, c in enumerate(classes)])
    with open(out_file, 'w') as f:
        json.dump(coco, f)
    return dict(images=len(images), annotations=len(annotations), classes=len(classes))
