r"""Write local benchmark copies + lmms-eval task YAMLs (granvit_mm/benchmarks/lmms_data.py), for
`python -m lmms_eval ... --include_path OUT_DIR` in lmms-eval's environment (`make lmms-eval-env`).

    # the toy: GranSynth val as a RefCOCO-style task + attribute VQA
    python tools/dataset_converters/lmms_eval_tasks.py gransynth --data-root data/gran_synth --out-dir OUT
    # RefCOCO / RefCOCO+ / RefCOCOg from the refer API files and COCO train2014 images
    python tools/dataset_converters/lmms_eval_tasks.py refcoco --name refcoco \
        --refs data/refcoco/refs\(unc\).p --instances data/refcoco/instances.json \
        --image-root data/coco/train2014 --splits val testA testB --out-dir OUT
    # DocVQA / TextVQA-style JSON (val: test splits have no answers)
    python tools/dataset_converters/lmms_eval_tasks.py vqa --kind docvqa \
        --json data/docvqa/val/val_v1.0.json \
        --image-root data/docvqa/val --out-dir OUT

Each task is OUT/<task>.yaml + OUT/data/<task>.parquet; the printed names go to lmms-eval's --tasks.
"""
import argparse
import sys

from granvit_mm.benchmarks import lmms_data


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='source', required=True)
    g = sub.add_parser('gransynth', help='GranSynth referring expressions + attribute questions')
    g.add_argument('--data-root', default='data/gran_synth')
    g.add_argument('--split', default='val')
    r = sub.add_parser('refcoco', help='RefCOCO / RefCOCO+ / RefCOCOg')
    r.add_argument('--name', required=True, choices=['refcoco', 'refcoco+', 'refcocog'])
    r.add_argument('--refs', required=True, help='refs(unc).p / refs(umd).p / refs(google).p')
    r.add_argument('--instances', required=True, help='the instances.json beside it')
    r.add_argument('--image-root', required=True, help='COCO train2014 image folder')
    r.add_argument('--splits', nargs='+', default=['val'])
    v = sub.add_parser('vqa', help='DocVQA / TextVQA-style JSON')
    v.add_argument('--kind', required=True, choices=['docvqa', 'textvqa'])
    v.add_argument('--json', required=True)
    v.add_argument('--image-root', required=True)
    v.add_argument('--split', default='val')
    for sp in (g, r, v):
        sp.add_argument('--out-dir', required=True)
        sp.add_argument('--max-questions', type=int, default=None, help='keep the first N questions a task')
    args = p.parse_args(argv)
    try:
        if args.source == 'gransynth':
            counts = lmms_data.write_gran_synth_tasks(args.data_root, args.out_dir, args.split,
                                                      args.max_questions)
        elif args.source == 'refcoco':
            counts = lmms_data.write_refcoco_tasks(args.name, args.refs, args.instances, args.image_root,
                                                   args.out_dir, args.splits, args.max_questions)
        else:
            counts = lmms_data.write_vqa_task(args.kind, args.json, args.image_root, args.out_dir, args.split,
                                              args.max_questions)
    except (FileNotFoundError, KeyError, ValueError) as err:
        sys.exit(f'error: {err}')
    for task, n in counts.items():
        print(f'{task}: {n} questions')
    print(f'lmms-eval: --include_path {args.out_dir} --tasks {",".join(counts)}')


if __name__ == '__main__':
    main()
