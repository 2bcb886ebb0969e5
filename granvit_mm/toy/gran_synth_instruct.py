"""GranSynth as LLaVA-format instruction data (stage 3 on the toy) and as the toy benchmark questions.

Each image becomes one LLaVA record (``image`` + alternating ``conversations``) mixing the tasks an
instruction set holds: the global caption, referring expressions (Caption2Bbox, the paper's prompt), region
captions (Bbox2Caption) and short attribute questions ("What colour is the large striped circle? Answer with
one word."). Boxes are normalised to the padded square (``core.geometry``), as in stages 1-2. The attribute
questions are the toy VQA benchmark's too (:func:`attribute_questions`), asked only where the other three
attributes name exactly one object of the image.
"""
import json
import os
import os.path as osp
from collections import Counter
from typing import Dict, Iterator, List, Tuple

import numpy as np

from granvit_mm.core.chat_format import DEFAULT_IMAGE_TOKEN
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.gran_record import BadRecordError, parse_line
from granvit_mm.core.prompts import (bbox2caption_question, caption2bbox_answer, caption2bbox_question,
                                     global_caption_question)

from .gran_synth import object_attributes

ASKED = ('colour', 'shape')  # the attributes the VQA questions ask for
_QUESTION = {
    'colour': 'What colour is the {size} {texture} {shape}? Answer with one word.',
    'shape': 'What shape is the {size} {colour} {texture} object? Answer with one word.',
}


def read_gran(ann_file: str) -> Iterator[dict]:
    """Records of a Gran JSONL file (core's parser; a bad line names file and line)."""
    with open(ann_file, 'rb') as f:
        for i, line in enumerate(f):
            if line.strip():
                try:
                    yield parse_line(line)
                except BadRecordError as err:
                    raise err.locate(ann_file, i) from None


def attribute_questions(record: dict) -> List[Tuple[str, str, int]]:
    """(question, one-word answer, region index) for every object whose other attributes are unique."""
    objects = [(i, object_attributes(r['caption'])) for i, r in enumerate(record['regions'])]
    objects = [(i, a) for i, a in objects if a is not None]
    out = []
    for asked in ASKED:
        keys = Counter(tuple(v for k, v in a.items() if k != asked) for _, a in objects)
        for i, attrs in objects:
            if keys[tuple(v for k, v in attrs.items() if k != asked)] == 1:
                out.append((_QUESTION[asked].format(**attrs), attrs[asked], i))
    return out


def unique_regions(record: dict) -> List[int]:
    """Regions whose caption names one region only (a referring expression must be unambiguous)."""
    counts = Counter(r['caption'] for r in record['regions'])
    return [i for i, r in enumerate(record['regions']) if counts[r['caption']] == 1]


def instruction_record(record: dict, index: int, rng: np.random.Generator, max_turns: int = 4) -> dict:
    """One LLaVA record: up to ``max_turns`` question/answer pairs drawn from the image's tasks."""
    geom = SquareGeometry(record['height'], record['width'], 1)
    boxes = geom.to_normalized([r['bbox'] for r in record['regions']]) if record['regions'] else []
    pairs = []
    if record.get('caption'):
        pairs.append((global_caption_question(), record['caption']))
    for i in unique_regions(record):
        cap = record['regions'][i]['caption']
        pairs.append((caption2bbox_question(cap), caption2bbox_answer(boxes[i])))
        pairs.append((bbox2caption_question(boxes[i]), cap))
    pairs += [(q, a) for q, a, _ in attribute_questions(record)]
    order = rng.permutation(len(pairs))[:max_turns]
    turns = []
    for k, j in enumerate(order):
        q, a = pairs[j]
        turns += [{'from': 'human', 'value': f'{DEFAULT_IMAGE_TOKEN}\n{q}' if k == 0 else q},
                  {'from': 'gpt', 'value': a}]
    return {'id': f'gran_synth_{index:06d}', 'image': record['image'], 'conversations': turns}


def write_instructions(data_root: str, out_dir: str, splits=('train', 'val'), seed: int = 0,
                       max_turns: int = 4) -> Dict[str, int]:
    """GranSynth's ``annotations/<split>.jsonl`` -> ``out_dir/<split>.json`` (images stay in
    ``data_root/images``); returns the record count per split."""
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for split in splits:
        rng = np.random.default_rng([seed, len(split)])
        recs = [instruction_record(r, i, rng, max_turns)
                for i, r in enumerate(read_gran(osp.join(data_root, 'annotations', f'{split}.jsonl')))]
        recs = [r for r in recs if r['conversations']]
        with open(osp.join(out_dir, f'{split}.json'), 'w') as f:
            json.dump(recs, f)
        counts[split] = len(recs)
    return counts
