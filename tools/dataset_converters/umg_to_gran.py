"""UMG-41M per-image json -> Gran JSONL (the schema we assume is in granvit_mm/datasets/converters/umg.py
and docs/data.md).

    python tools/dataset_converters/umg_to_gran.py data/umg/anns/ --img-root data/umg/images \
        --bbox-format xyxy --out data/gran/umg.jsonl --max-lines 100000
"""
import argparse

from granvit_mm.datasets.converters import convert_umg, format_stats, write_records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('inputs', nargs='+', help='folders of per-image .json (recursive), .json or .jsonl files')
    p.add_argument('--out', required=True)
    p.add_argument('--bbox-format', choices=['xyxy', 'xywh'], default='xyxy')
    p.add_argument('--img-root', default=None, help='to read image sizes missing from the json')
    p.add_argument('--img-prefix', default='')
    p.add_argument('--source', default='umg')
    p.add_argument('--max-lines', type=int, default=0)
    args = p.parse_args(argv)
    records = convert_umg(args.inputs, args.bbox_format, args.img_prefix, args.img_root, args.source)
    stats = write_records(records, args.out, args.max_lines, None, 'umg')
    print(format_stats(stats))
    return stats


if __name__ == '__main__':
    main()
