"""OCR annotations -> Gran JSONL ``text`` regions.

    # ICDAR-2015 style (gt_img_N.txt beside img_N.jpg in two folders)
    python tools/dataset_converters/ocr_to_gran.py icdar2015 --img-dir data/ic15/imgs/train \
        --gt-dir data/ic15/annotations/train --img-prefix ic15/imgs/train/ --out data/gran/ic15.jsonl
    # TextOCR
    python tools/dataset_converters/ocr_to_gran.py textocr --json data/textocr/TextOCR_0.1_train.json \
        --img-prefix textocr/ --out data/gran/textocr.jsonl
    # PaddleOCR: PPOCRLabel's Label.txt, or ocr() results saved as json ({image path: result})
    python tools/dataset_converters/ocr_to_gran.py ppocr-label --label data/docs/Label.txt \
        --img-root data/docs --out data/gran/docs.jsonl
    python tools/dataset_converters/ocr_to_gran.py paddle-json --json results.json --img-root data/docvqa \
        --min-score 0.5 --img-prefix docvqa/ --out data/gran/docvqa.jsonl
"""
import argparse
import json

from granvit_mm.datasets.converters import (convert_icdar2015, convert_paddle_json, convert_ppocr_label,
                                            convert_textocr, format_stats, load_paddle_json, write_records)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='fmt', required=True)
    ic = sub.add_parser('icdar2015')
    ic.add_argument('--img-dir', required=True)
    ic.add_argument('--gt-dir', required=True)
    ic.add_argument('--keep-dont-care', action='store_true', help="keep '###' boxes (as text '###')")
    to = sub.add_parser('textocr')
    to.add_argument('--json', required=True)
    pl = sub.add_parser('ppocr-label')
    pl.add_argument('--label', required=True, help='Label.txt')
    pl.add_argument('--img-root', required=True, help='folder the Label.txt paths are relative to')
    pl.add_argument('--keep-difficult', action='store_true')
    pj = sub.add_parser('paddle-json')
    pj.add_argument(
        '--json', nargs='+', required=True, help='{path: ocr() result} json(s) or 3.x result jsons')
    pj.add_argument('--img-root', required=True)
    pj.add_argument('--min-score', type=float, default=0.5)
    for sp in (ic, to, pl, pj):
        sp.add_argument('--out', required=True)
        sp.add_argument('--img-prefix', default='')
        sp.add_argument('--source', default=None)
        sp.add_argument('--max-lines', type=int, default=0)
    args = p.parse_args(argv)

    if args.fmt == 'icdar2015':
        records = convert_icdar2015(args.img_dir, args.gt_dir, args.img_prefix, args.source or 'icdar2015',
                                    args.keep_dont_care)
        total = None
    elif args.fmt == 'textocr':
        with open(args.json, encoding='utf-8') as f:
            data = json.load(f)
        records, total = convert_textocr(data, args.img_prefix, args.source or 'textocr'), len(data['imgs'])
    elif args.fmt == 'ppocr-label':
        records = convert_ppocr_label(args.label, args.img_root, args.img_prefix, args.source or 'paddleocr',
                                      not args.keep_difficult)
        total = None
    else:
        data = load_paddle_json(args.json)
        records = convert_paddle_json(data, args.img_root, args.img_prefix, args.source or 'paddleocr',
                                      args.min_score)
        total = len(data)
    stats = write_records(records, args.out, args.max_lines, total, args.fmt)
    print(format_stats(stats))
    return stats


if __name__ == '__main__':
    main()
