"""Ask a GranViT checkpoint about images from the command line; write JSONL results and drawn PNGs.

    # region captions (Bbox2Caption) for boxes in the image's own pixels, and/or the global caption
    python tools/infer.py caption CONFIG CHECKPOINT INPUT [--boxes "x1,y1,x2,y2" ...] [--global-caption]
    # grounding (Caption2Bbox): phrase -> box
    python tools/infer.py ground CONFIG CHECKPOINT INPUT --phrases "a red circle" ...
    # the same with a transformers LLaVA export (tools/model_converters/xtuner_to_hf_llava.py): no checkpoint
    python tools/infer.py ground HF_LLAVA_DIR INPUT --phrases "a red circle" ...
    # dense features of the encoder alone, as PCA-to-RGB pictures (optionally beside a second checkpoint)
    python tools/infer.py features CHECKPOINT INPUT [--config CFG] [--compare CKPT2 [--compare-config CFG2]]

CONFIG + CHECKPOINT: a stage-1 config (tools/train.py) or a stage-2+ XTuner config (xtuner train) and its
checkpoint; which one is told from the config (``--stage`` to force it). Boxes are in the image's own pixels.
INPUT is an image file, a folder of images, or a Gran JSONL file: for a JSONL, ``caption`` asks about each
record's region boxes and ``ground`` grounds each record's region captions (unless --boxes / --phrases are
given), and the ground truth is written beside the answers. CHECKPOINT may be a work dir (its best, else
latest checkpoint). Results go to ``--out-dir`` (default work_dirs/infer/<command>): ``results.jsonl`` (one
line per image) and ``vis/*.png`` (boxes drawn) or ``features/*.png``. A bad image is reported in its JSONL
line and the run goes on; the exit status is 1 if any image failed. The work is done by ``granvit_mm.apis``
(``GranViTInferencer`` and ``batch_inference``); this file only parses the command line.
"""
import argparse
import os
import os.path as osp
import sys

from granvit_mm.apis import (DEFAULT_MAX_PIXELS, DenseFeatureExtractor, GranViTInferencer,
                             InferenceInputError, parse_box_text)
from granvit_mm.apis.batch_inference import RunSummary, ask_all, features_all, read_items
from granvit_mm.core.paths import MissingPathError


def ask(args, items) -> RunSummary:
    infer = GranViTInferencer(args.config, args.checkpoint, device=args.device, llm_path=args.llm_path,
                              stage=args.stage, max_pixels=args.max_pixels,
                              max_new_tokens=args.max_new_tokens)
    boxes = [parse_box_text(b) for b in args.boxes] if getattr(args, 'boxes', None) else None
    phrases = list(args.phrases) if getattr(args, 'phrases', None) else None
    return ask_all(infer, items, args.out_dir, args.command, boxes=boxes, phrases=phrases,
                   global_caption=args.global_caption, batch_size=args.batch_size, draw=not args.no_draw)


def features(args, items) -> RunSummary:
    extractors = [(args.label or _label(args.checkpoint), DenseFeatureExtractor(
        args.checkpoint, config=args.config, input_size=args.input_size, device=args.device,
        max_pixels=args.max_pixels, prefix=args.prefix))]
    if args.compare:
        extractors.append((args.compare_label or _label(args.compare), DenseFeatureExtractor(
            args.compare, config=args.compare_config, input_size=args.input_size, device=args.device,
            max_pixels=args.max_pixels)))
    return features_all(extractors, items, args.out_dir, args.view_size, args.save_npy, args.max_pixels)


def _label(path: str) -> str:
    return osp.splitext(osp.basename(osp.normpath(path)))[0]


def report(args, summary: RunSummary) -> None:
    print(f'\n[granvit] {summary.total - summary.failed}/{summary.total} images done -> {summary.results}')
    if summary.failed:
        print(f'[granvit] {summary.failed} image(s) failed; their lines hold "error"')
    if summary.acc_iou50 is not None:
        hits = sum(1 for v in summary.ious if v is not None and v >= 0.5)
        parsed = sum(1 for v in summary.ious if v is not None)
        n = len(summary.ious)
        print(f'[granvit] grounding vs the records: Acc@IoU0.5 {summary.acc_iou50:.2f} ({hits}/{n}), '
              f'answers with a usable box {parsed}/{n}')


# ---------------------------------------------------------------------------------------------- cli
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    def common(p, positional_input=True):
        if positional_input:
            p.add_argument('input', help='an image, a folder of images, or a Gran JSONL file')
        p.add_argument('--out-dir',
                       help='where results.jsonl and pictures go (default work_dirs/infer/<command>)')
        p.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda:0')
        p.add_argument('--img-root', help='image folder of a JSONL input (default <jsonl dir>/../images)')
        p.add_argument('--limit', type=int, help='only the first N images')
        p.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS, help='refuse larger images')

    for name, what in (('caption', 'region captions / global caption'), ('ground', 'phrase -> box')):
        p = sub.add_parser(name, help=what)
        p.add_argument('paths', nargs='+', metavar='CONFIG CHECKPOINT INPUT | HF_LLAVA_DIR INPUT',
                       help='the training config, its checkpoint (a .pth or a work dir) and the input; or a '
                            'transformers LLaVA directory and the input')
        common(p, positional_input=False)
        p.add_argument('--stage', default='auto', choices=['auto', 'stage1', 'stage2', 'hf_llava'],
                       help='which kind of model (auto: from the config, or a LLaVA directory)')
        p.add_argument('--llm-path', help="override the config's LLM path")
        p.add_argument('--batch-size', type=int, default=4, help='images per forward pass')
        p.add_argument('--max-new-tokens', type=int, help="generation length (default: the model's)")
        p.add_argument('--no-draw', action='store_true', help='write no pictures')
        if name == 'caption':
            p.add_argument('--boxes', nargs='+', metavar='"X1,Y1,X2,Y2"', help='boxes in image pixels')
            p.add_argument('--global-caption', action='store_true', help='also the global caption')
        else:
            p.add_argument('--phrases', nargs='+', metavar='PHRASE', help='phrases to ground')
    p = sub.add_parser('features', help='PCA-to-RGB pictures of the dense features')
    p.add_argument('checkpoint', help='a stage-1 checkpoint / work dir, or a converted SigLIP2 checkpoint')
    common(p)
    p.add_argument('--config', help='config with a GranViT model.backbone (not needed for converter output)')
    p.add_argument('--prefix', help="state-dict prefix, e.g. 'teacher.module.' for the EMA teacher")
    p.add_argument('--compare', help='a second checkpoint shown beside the first (e.g. the SigLIP2 start)')
    p.add_argument('--compare-config', help='config of the second checkpoint')
    p.add_argument('--label', help='caption of the first feature picture')
    p.add_argument('--compare-label', help='caption of the second feature picture')
    p.add_argument('--input-size', type=int, help='model input side (default: the config / checkpoint)')
    p.add_argument('--view-size', type=int, default=256, help='longer side of each picture')
    p.add_argument('--save-npy', action='store_true', help='also save the (C, rows, cols) features')
    args = parser.parse_args(argv)
    if args.command != 'features':
        if len(args.paths) not in (2, 3):
            parser.error(f'{args.command} takes CONFIG CHECKPOINT INPUT or HF_LLAVA_DIR INPUT, '
                         f'got {args.paths}')
        args.config, args.checkpoint, args.input = (args.paths if len(args.paths) == 3
                                                    else (args.paths[0], None, args.paths[1]))
    args.global_caption = getattr(args, 'global_caption', False)
    args.out_dir = args.out_dir or osp.join('work_dirs', 'infer', args.command)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        items = read_items(args.input, args.img_root, args.limit)
        os.makedirs(args.out_dir, exist_ok=True)
        summary = features(args, items) if args.command == 'features' else ask(args, items)
    except (MissingPathError, InferenceInputError, ValueError, NotImplementedError) as e:
        raise SystemExit(f'[granvit] {e}')
    report(args, summary)
    return 1 if summary.failed else 0


if __name__ == '__main__':
    sys.exit(main())
