"""Ask a GranViT checkpoint about images from the command line; write JSONL results and drawn PNGs.

    # region captions (Bbox2Caption) for boxes in the image's own pixels, and/or the global caption
    python tools/infer.py caption CONFIG CHECKPOINT INPUT [--boxes "x1,y1,x2,y2" ...] [--global-caption]
    # grounding (Caption2Bbox): phrase -> box
    python tools/infer.py ground CONFIG CHECKPOINT INPUT --phrases "a red circle" ...
    # dense features of the encoder alone, as PCA-to-RGB pictures (optionally beside a second checkpoint)
    python tools/infer.py features CHECKPOINT INPUT [--config CFG] [--compare CKPT2 [--compare-config CFG2]]

INPUT is an image file, a folder of images, or a Gran JSONL file: for a JSONL, ``caption`` asks about each
record's region boxes and ``ground`` grounds each record's region captions (unless --boxes / --phrases are
given), and the ground truth is written beside the answers. CHECKPOINT may be a work dir (its best, else latest
checkpoint). Results go to ``--out-dir`` (default work_dirs/infer/<command>): ``results.jsonl`` (one line per
image) and ``vis/*.png`` (boxes drawn) or ``features/*.png``. A bad image is reported in its JSONL line and the
run goes on; the exit status is 1 if any image failed.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from granvit_mm.apis import (DEFAULT_MAX_PIXELS, DenseFeatureExtractor, GranViTInferencer, InferenceInputError,
                             draw_result, feature_view, list_images, load_image, parse_box_text,
                             side_by_side)
from granvit_mm.core.paths import MissingPathError


class Item:
    """One image to process: where it is, what to ask, and the ground truth a Gran record gives."""

    def __init__(self, path: str, name: str, boxes=None, phrases=None, truth: Optional[dict] = None):
        self.path, self.name, self.boxes, self.phrases, self.truth = path, name, boxes, phrases, truth


def read_items(source: str, img_root: Optional[str], limit: Optional[int]) -> List[Item]:
    """An image file, a folder of images or a Gran JSONL -> items (JSONL: with its regions as truth)."""
    if osp.isdir(source):
        items = [Item(p, osp.splitext(osp.basename(p))[0]) for p in list_images(source)]
    elif source.endswith('.jsonl'):
        items = list(_jsonl_items(source, img_root))
    elif osp.isfile(source):
        items = [Item(source, osp.splitext(osp.basename(source))[0])]
    else:
        raise SystemExit(f'[granvit] input not found: {source!r} (an image, a folder of images or a .jsonl)')
    if not items:
        raise SystemExit(f'[granvit] no images in {source!r}')
    return items[:limit] if limit else items


def _jsonl_items(path: str, img_root: Optional[str]) -> Iterator[Item]:
    from granvit_mm.core.gran_record import BadRecordError, parse_line
    root = img_root or next((d for d in (osp.join(osp.dirname(osp.dirname(osp.abspath(path))), 'images'),
                                         osp.dirname(osp.abspath(path))) if osp.isdir(d)))
    with open(path, 'rb') as f:
        for i, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                rec = parse_line(raw)
            except BadRecordError as e:
                raise SystemExit(f'[granvit] {path} line {i + 1}: {e}')
            regions = rec.get('regions') or []
            stem = osp.splitext(osp.basename(str(rec.get('image', i))))[0]
            yield Item(osp.join(root, str(rec.get('image', ''))), f'{i:06d}_{stem}',
                       boxes=[r['bbox'] for r in regions], phrases=[r['caption'] for r in regions],
                       truth=dict(caption=rec.get('caption'), regions=regions))


def chunks(items: List[Item], size: int) -> Iterator[List[Item]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


def progress(total: int):
    """mmengine's progress bar for more than one image, else nothing."""
    if total <= 1:
        return None
    from mmengine.utils import ProgressBar
    return ProgressBar(total, file=sys.stdout)


# --------------------------------------------------------------------------------------------- ask
def ask(args, items: List[Item]) -> int:
    infer = GranViTInferencer(args.config, args.checkpoint, device=args.device, llm_path=args.llm_path,
                              max_pixels=args.max_pixels, max_new_tokens=args.max_new_tokens)
    boxes = [parse_box_text(b) for b in args.boxes] if getattr(args, 'boxes', None) else None
    phrases = list(args.phrases) if getattr(args, 'phrases', None) else None
    for item in items:
        if args.command == 'caption':
            item.boxes = boxes if boxes is not None else item.boxes
            item.phrases = None
        else:
            item.phrases = phrases if phrases is not None else item.phrases
            item.boxes = None
    if args.command == 'caption' and not args.global_caption and not any(i.boxes for i in items):
        raise SystemExit('[granvit] nothing to ask: give --boxes and/or --global-caption '
                         '(a Gran JSONL input asks about its regions)')
    if args.command == 'ground' and not any(i.phrases for i in items):
        raise SystemExit('[granvit] nothing to ground: give --phrases (a Gran JSONL input grounds its captions)')
    failed = 0
    bar = progress(len(items))
    os.makedirs(osp.join(args.out_dir, 'vis'), exist_ok=True)
    with open(osp.join(args.out_dir, 'results.jsonl'), 'w', encoding='utf-8') as out:
        for chunk in chunks(items, args.batch_size):
            for item, result in zip(chunk, _ask_chunk(infer, chunk, args.global_caption)):
                result = dict(result, image=item.path)
                failed += 'error' in result
                if 'error' not in result:
                    if item.truth is not None:
                        add_truth(result, item.truth)
                    if not args.no_draw:
                        drawn = draw_result(infer.load(item.path), result)
                        Image.fromarray(drawn).save(osp.join(args.out_dir, 'vis', item.name + '.png'))
                out.write(json.dumps(result, ensure_ascii=False) + '\n')
                if bar is not None:
                    bar.update()
    summary(args, len(items), failed)
    return 1 if failed else 0


def _ask_chunk(infer: GranViTInferencer, chunk: List[Item], global_caption: bool) -> List[dict]:
    """A batch in one forward; if an image in it is bad, each one alone so that only the bad one fails."""
    def run(items):
        return infer([i.path for i in items], boxes=[i.boxes or None for i in items],
                     phrases=[i.phrases or None for i in items], global_caption=global_caption,
                     batch_size=len(items))

    try:
        return run(chunk)
    except InferenceInputError:
        if len(chunk) == 1:
            return [dict(error=str(sys.exc_info()[1]))]
    results = []
    for item in chunk:
        try:
            results += run([item])
        except InferenceInputError as e:
            results.append(dict(error=str(e)))
    return results


def add_truth(result: dict, truth: dict) -> None:
    """Gran record truth beside the answers: region captions, and for grounding the true box and IoU."""
    regions = truth['regions']
    for r, t in zip(result.get('regions', []), regions):
        r['gt_caption'] = t['caption']
    for g, t in zip(result.get('grounding', []), regions):
        g['gt_bbox'] = t['bbox']
        g['iou'] = None if g['bbox'] is None else round(box_iou(g['bbox'], t['bbox']), 4)
    if 'caption' in result:
        result['gt_caption'] = truth['caption']


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def summary(args, total: int, failed: int) -> None:
    print(f'\n[granvit] {total - failed}/{total} images done -> {osp.join(args.out_dir, "results.jsonl")}')
    if failed:
        print(f'[granvit] {failed} image(s) failed; their lines hold "error"')
    if args.command == 'ground':
        ious = []
        with open(osp.join(args.out_dir, 'results.jsonl'), encoding='utf-8') as f:
            for line in f:
                ious += [g.get('iou') for g in json.loads(line).get('grounding', []) if 'gt_bbox' in g]
        if ious:
            hits = sum(1 for v in ious if v is not None and v >= 0.5)
            parsed = sum(1 for v in ious if v is not None)
            print(f'[granvit] grounding vs the records: Acc@IoU0.5 {100.0 * hits / len(ious):.2f} '
                  f'({hits}/{len(ious)}), answers with a usable box {parsed}/{len(ious)}')


# ---------------------------------------------------------------------------------------- features
def features(args, items: List[Item]) -> int:
    models: List[Tuple[str, DenseFeatureExtractor]] = [(args.label or _label(args.checkpoint), DenseFeatureExtractor(
        args.checkpoint, config=args.config, input_size=args.input_size, device=args.device,
        max_pixels=args.max_pixels, prefix=args.prefix))]
    if args.compare:
        models.append((args.compare_label or _label(args.compare), DenseFeatureExtractor(
            args.compare, config=args.compare_config, input_size=args.input_size, device=args.device,
            max_pixels=args.max_pixels)))
    out_dir = osp.join(args.out_dir, 'features')
    os.makedirs(out_dir, exist_ok=True)
    failed = 0
    bar = progress(len(items))
    with open(osp.join(args.out_dir, 'results.jsonl'), 'w', encoding='utf-8') as out:
        for item in items:
            line = dict(image=item.path)
            try:
                image = load_image(item.path, args.max_pixels)
                panels, labels = [_thumb(image, args.view_size)], ['image']
                for label, extractor in models:
                    feats = extractor.features([image])[0]
                    panels += feature_view([feats], args.view_size)
                    labels.append(label)
                    line[label] = dict(shape=list(feats.featmap.shape), image_grid=list(feats.image_grid))
                    if args.save_npy:
                        np.save(osp.join(out_dir, f'{item.name}_{label}.npy'), feats.image_features().numpy())
                png = osp.join(out_dir, item.name + '.png')
                Image.fromarray(side_by_side(panels, labels)).save(png)
                line['view'] = png
            except InferenceInputError as e:
                line['error'] = str(e)
                failed += 1
            out.write(json.dumps(line) + '\n')
            if bar is not None:
                bar.update()
    summary(args, len(items), failed)
    return 1 if failed else 0


def _label(path: str) -> str:
    return osp.splitext(osp.basename(osp.normpath(path)))[0]


def _thumb(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                    Image.BICUBIC))


# ---------------------------------------------------------------------------------------------- cli
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    def common(p):
        p.add_argument('input', help='an image, a folder of images, or a Gran JSONL file')
        p.add_argument('--out-dir', help='where results.jsonl and pictures go (default work_dirs/infer/<command>)')
        p.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda:0')
        p.add_argument('--img-root', help='image folder of a JSONL input (default <jsonl dir>/../images)')
        p.add_argument('--limit', type=int, help='only the first N images')
        p.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS, help='refuse larger images')

    for name, what in (('caption', 'region captions / global caption'), ('ground', 'phrase -> box')):
        p = sub.add_parser(name, help=what)
        p.add_argument('config', help='the training config')
        p.add_argument('checkpoint', help='a .pth file or a work dir')
        common(p)
        p.add_argument('--llm-path', help="override the config's model.head.llm_path")
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
    args.global_caption = getattr(args, 'global_caption', False)
    args.out_dir = args.out_dir or osp.join('work_dirs', 'infer', args.command)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    items = read_items(args.input, args.img_root, args.limit)
    os.makedirs(args.out_dir, exist_ok=True)
    try:
        return features(args, items) if args.command == 'features' else ask(args, items)
    except (MissingPathError, InferenceInputError, ValueError, NotImplementedError) as e:
        raise SystemExit(f'[granvit] {e}')


if __name__ == '__main__':
    sys.exit(main())
