"""Caption2Bbox floors of a Gran dataset: the best constant box (fit on train for Acc@IoU0.5, and for mean
IoU; scored on val) and a random-object oracle (the true box of a random region of the same image). A
grounding score means something only above both.

    python tools/analysis_tools/grounding_floor.py --data-root data/gran_synth \
        [--train annotations/train*.jsonl] [--val annotations/val*.jsonl] [--out work_dirs/floor.json]
"""
import argparse
import json
import os
import os.path as osp

from granvit_mm.core.box_text import format_box
from granvit_mm.core.gran_record import parse_line
from granvit_mm.datasets.jsonl_index import resolve_shards
from granvit_mm.evaluation.grounding_floor import (constant_box_scores, fit_constant_box, normalised_regions,
                                                   random_object_scores)


def read_records(pattern: str, data_root: str):
    for shard in resolve_shards(pattern, data_root):
        with open(shard, 'rb') as f:
            for raw in f:
                if raw.strip():
                    yield parse_line(raw)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--train', default='annotations/train*.jsonl')
    p.add_argument('--val', default='annotations/val*.jsonl')
    p.add_argument('--iou-thr', type=float, default=0.5)
    p.add_argument('--out', default=None, help='write the scores here (JSON)')
    args = p.parse_args(argv)
    train = normalised_regions(read_records(args.train, args.data_root))
    val = normalised_regions(read_records(args.val, args.data_root))
    result = {}
    for criterion in ('acc', 'miou'):
        box = fit_constant_box(train, args.iou_thr, criterion)
        result[f'constant_{criterion}'] = constant_box_scores(box, val, args.iou_thr)
        result[f'constant_{criterion}']['box'] = format_box(box.tolist())
    result['random_object'] = random_object_scores(val, args.iou_thr)
    acc = f'acc_iou{args.iou_thr:g}'
    for name in ('constant_acc', 'constant_miou', 'random_object'):
        s = result[name]
        kinds = ', '.join(f'{k} {s[f"{k}/{acc}"]:.2f}' for k in ('object', 'text') if f'{k}/num' in s)
        box = f'  box {s["box"]}' if 'box' in s else ''
        print(f'{name:14s} Acc@IoU{args.iou_thr:g} {s[acc]:6.2f}  mIoU {s["miou"]:6.2f}  ({kinds}; '
              f'{s["num"]} questions){box}')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
