"""Apply the paper's Gran-29M filters to Gran JSONL shards and report what each rule removed.

    python tools/dataset_converters/filter_gran.py 'data/gran/raw/*.jsonl' --out data/gran/filtered.jsonl \
        --max-lines 100000 [--min-short-side 448 --min-aspect 0.3333 --max-aspect 3 --min-box-area 10000
        --box-kinds object text]
"""
import argparse
import json

from granvit_mm.datasets.converters import GranWriter, PaperFilter, track
from granvit_mm.datasets.jsonl_index import resolve_shards


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('inputs', nargs='+', help='JSONL files or globs')
    p.add_argument('--out', required=True)
    p.add_argument('--min-short-side', type=float, default=448)
    p.add_argument('--min-aspect', type=float, default=1 / 3)
    p.add_argument('--max-aspect', type=float, default=3.0)
    p.add_argument('--min-box-area', type=float, default=100**2)
    p.add_argument('--box-kinds', nargs='+', default=['object', 'text'], choices=['object', 'text'])
    p.add_argument('--max-lines', type=int, default=0)
    p.add_argument('--report', default=None, help='also write the counts as json here')
    args = p.parse_args(argv)
    filt = PaperFilter(args.min_short_side, args.min_aspect, args.max_aspect, args.min_box_area,
                       args.box_kinds)
    with GranWriter(args.out, args.max_lines) as writer:
        for shard in resolve_shards(args.inputs):
            with open(shard, 'rb') as f:
                for raw in track(f, desc=shard):
                    if raw.strip():
                        rec = filt.filter_line(raw)
                        if rec is not None:
                            writer.write(rec)
    print(filt.report())
    print('written: ' + ', '.join(writer.files))
    if args.report:
        with open(args.report, 'w') as f:
            json.dump(dict(filt.stats), f, indent=2)
    return dict(filt.stats)


if __name__ == '__main__':
    main()
