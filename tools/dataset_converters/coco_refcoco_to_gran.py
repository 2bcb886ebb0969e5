r"""RefCOCO / RefCOCO+ / RefCOCOg (refer API files) and COCO captions -> Gran JSONL.

Referring expressions become region captions (``object`` regions), optionally with COCO captions as the
global caption:

    python tools/dataset_converters/coco_refcoco_to_gran.py refcoco \
        --refs data/refcoco/refs\(unc\).p --instances data/refcoco/instances.json --splits train \
        --img-prefix train2014/ --captions data/coco/annotations/captions_train2014.json \
        --out data/gran/refcoco_train.jsonl

COCO captions as global captions (regions from instances, category names as region captions), leaving out
the RefCOCO evaluation images that train2017 contains:

    python tools/dataset_converters/coco_refcoco_to_gran.py captions \
        --captions data/coco/annotations/captions_train2017.json \
        --instances data/coco/annotations/instances_train2017.json --img-prefix train2017/ \
        --exclude-refs data/refcoco/refs\(unc\).p data/refcocog/refs\(umd\).p --out data/gran/coco_caps.jsonl
"""
import argparse
import json

from granvit_mm.datasets.converters import (coco_captions_by_image, convert_coco_captions, convert_refcoco,
                                            format_stats, load_basic_pickle, refcoco_eval_image_ids,
                                            write_records)


def _load_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='mode', required=True)
    r = sub.add_parser('refcoco', help='referring expressions as region captions')
    r.add_argument('--refs', required=True, help='refs(unc).p / refs(umd).p / refs(google).p')
    r.add_argument('--instances', required=True, help='the instances.json beside it')
    r.add_argument('--splits', nargs='+', default=['train'])
    r.add_argument('--text-field', choices=['sent', 'raw'], default='sent')
    r.add_argument('--sentences', choices=['all', 'first'], default='all')
    r.add_argument('--captions', default=None, help='COCO captions json to add global captions')
    r.add_argument('--source', default='refcoco')
    c = sub.add_parser('captions', help='COCO captions as global captions')
    c.add_argument('--captions', required=True, help='captions_train2017.json')
    c.add_argument('--instances', default=None, help='instances_train2017.json (regions); else no regions')
    c.add_argument(
        '--exclude-refs', nargs='*', default=[], help='refs pickles whose non-train images to drop')
    c.add_argument('--source', default='coco_captions')
    for sp in (r, c):
        sp.add_argument('--out', required=True, help='output .jsonl (shards: name-00000.jsonl, ...)')
        sp.add_argument('--img-prefix', default='', help='prepended to file names, e.g. train2014/')
        sp.add_argument('--pick', choices=['longest', 'first'], default='longest', help='which COCO caption')
        sp.add_argument('--max-lines', type=int, default=0, help='lines per shard (0: one file)')
    args = p.parse_args(argv)

    if args.mode == 'refcoco':
        refs = load_basic_pickle(args.refs)
        caps = coco_captions_by_image(_load_json(args.captions), args.pick) if args.captions else None
        records = convert_refcoco(refs, _load_json(args.instances), args.splits, args.text_field,
                                  args.sentences, args.img_prefix, args.source, caps)
        total = len({r['image_id'] for r in refs if r.get('split') in args.splits})
        stats = write_records(records, args.out, args.max_lines, total, 'refcoco')
    else:
        exclude = set()
        for path in args.exclude_refs:
            exclude |= refcoco_eval_image_ids(load_basic_pickle(path))
        data = _load_json(args.captions)
        instances = _load_json(args.instances) if args.instances else None
        records = convert_coco_captions(data, instances, args.pick, args.img_prefix, args.source, exclude)
        stats = write_records(
            records,
            args.out,
            args.max_lines,
            len(data['images']),
            'coco captions',
            allow_empty_regions=instances is None)
        stats['images_excluded_refcoco_eval'] = len(exclude)
    print(format_stats(stats))
    return stats


if __name__ == '__main__':
    main()
