"""Visual Genome region descriptions -> Gran JSONL.

    python tools/dataset_converters/visual_genome_to_gran.py \
        --regions data/vg/region_descriptions.json --image-data data/vg/image_data.json \
        --out data/gran/vg.jsonl --max-lines 100000

Image paths are ``VG_100K/1.jpg`` / ``VG_100K_2/...`` (from image_data urls), relative to the VG image root.
region_descriptions.json is about 700 MB and loaded whole: expect a few GB of RAM.
"""
import argparse
import json

from granvit_mm.datasets.converters import convert_visual_genome, format_stats, write_records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--regions', required=True, help='region_descriptions.json')
    p.add_argument('--image-data', required=True, help='image_data.json')
    p.add_argument('--out', required=True)
    p.add_argument('--img-prefix', default='')
    p.add_argument('--no-dedupe', action='store_true', help='keep verbatim duplicate regions')
    p.add_argument('--max-phrase-words', type=int, default=None, help='drop longer phrases (paper: ~10)')
    p.add_argument('--max-lines', type=int, default=0, help='lines per shard (0: one file)')
    p.add_argument('--source', default='visual_genome')
    args = p.parse_args(argv)
    with open(args.regions, encoding='utf-8') as f:
        regions = json.load(f)
    with open(args.image_data, encoding='utf-8') as f:
        image_data = json.load(f)
    records = convert_visual_genome(regions, image_data, args.img_prefix, args.source, not args.no_dedupe,
                                    args.max_phrase_words)
    stats = write_records(records, args.out, args.max_lines, len(regions), 'visual genome')
    print(format_stats(stats))
    return stats


if __name__ == '__main__':
    main()
