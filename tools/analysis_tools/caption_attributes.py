"""Which words of GranSynth's region captions a checkpoint gets right: per attribute, by objects in the image.

ROUGE-L says how much of a caption is right, not what: this splits it into size / colour / texture / shape
(and exact OCR words), and by how many objects share the image, so "cannot see" (wrong on single-object
images) and "looks at the wrong object" (right alone, wrong among others) are told apart.

    python tools/infer.py caption configs/granvit_pretrain_tiny.py work_dirs/granvit_pretrain_tiny \
        data/gran_synth/annotations/val.jsonl --out-dir work_dirs/infer/val
    python tools/analysis_tools/caption_attributes.py work_dirs/infer/val/results.jsonl
"""
import argparse
import json
from collections import defaultdict
from typing import Dict, Iterable

from granvit_mm.toy.gran_synth import ATTRIBUTES, object_attributes


def attribute_accuracy(rows: Iterable[dict]) -> Dict[str, Dict[str, float]]:
    """{'objects=N' | 'all': {attribute: % right, 'n': regions}, 'ocr': {'exact': %, 'n': regions}} from
    ``tools/infer.py caption`` result lines (each region has ``caption`` and ``gt_caption``)."""
    hits = defaultdict(lambda: defaultdict(list))
    for row in rows:
        regions = row.get('regions', [])
        objects = [r for r in regions if object_attributes(r['gt_caption'])]
        for r in regions:
            gt = object_attributes(r['gt_caption'])
            if gt is None:
                hits['ocr']['exact'].append(r['caption'].strip() == r['gt_caption'].strip())
                continue
            pred = object_attributes(r['caption']) or {}
            for group in ('all', f'objects={len(objects)}'):
                for attr in ATTRIBUTES:
                    hits[group][attr].append(pred.get(attr) == gt[attr])
    out = {}
    for group, by_attr in sorted(hits.items()):
        out[group] = {a: 100.0 * sum(v) / len(v) for a, v in by_attr.items()}
        out[group]['n'] = len(next(iter(by_attr.values())))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('results', help='results.jsonl of `tools/infer.py caption` on a GranSynth JSONL')
    args = p.parse_args(argv)
    with open(args.results, encoding='utf-8') as f:
        acc = attribute_accuracy(json.loads(line) for line in f if line.strip())
    for group, by_attr in acc.items():
        cells = '  '.join(f'{k} {v:5.1f}' for k, v in by_attr.items() if k != 'n')
        print(f'{group:>10s} ({by_attr["n"]:4d} regions)  {cells}')
    return acc


if __name__ == '__main__':
    main()
