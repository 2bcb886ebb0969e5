"""Helpers shared by the dataset tests (fixtures are in conftest.py)."""
import json
import os.path as osp

import numpy as np
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def write_jsonl(path, records):
    """Records (dicts or raw strings) -> a JSONL file."""
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + '\n')
    return str(path)


def write_image(path, w, h, colour=(200, 30, 30), mode='RGB'):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[...] = colour
    Image.fromarray(arr).convert(mode).save(path)
    return str(path)


def record(image='a.png', w=40, h=30, regions=None, caption='a red image', **kw):
    if regions is None:
        regions = [dict(bbox=[2, 3, 20, 25], caption='a red square', kind='object')]
    return dict(image=image, width=w, height=h, source='test', caption=caption, regions=regions, **kw)


def pipeline(size=32, tasks=None, box_style='decimal3'):
    from granvit_mm.datasets.pipeline import gran_pipeline
    return gran_pipeline(size, tasks or dict(global_caption=1, bbox2caption=2), box_style)
