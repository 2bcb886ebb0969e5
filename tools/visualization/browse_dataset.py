"""Draw what the model will see: transformed images with their task boxes, captions and box text.

    # from a config (train_dataloader.dataset, or --split val)
    python tools/visualization/browse_dataset.py configs/xxx.py --output-dir work_dirs/browse --max 20
    # without a config, on a Gran JSONL
    python tools/visualization/browse_dataset.py --ann-file data/gran_synth/annotations/train.jsonl \
        --data-root data/gran_synth --img-prefix images/ --size 64 --output-dir work_dirs/browse --max 8

Each PNG shows the model input (upscaled to ``--display`` px) with every task's box (colour per task) and
numbered labels, and a text panel listing each task's question and answer (the box text as the LLM reads it).
The white boxes are the self-distillation regions (``distill_bboxes``).
"""
import argparse
import os
import os.path as osp
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TASK_COLOURS = {
    'global_caption': (128, 128, 128),
    'bbox2caption': (255, 60, 60),
    'caption2bbox': (40, 200, 255)
}


def build_dataset(args):
    from granvit_mm.registry import DATASETS
    if args.config:
        from mmengine.config import Config
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(dict(kv.split('=', 1) for kv in args.cfg_options))
        ds_cfg = cfg[f'{args.split}_dataloader']['dataset']
        return DATASETS.build(ds_cfg)
    from granvit_mm.datasets.pipeline import gran_pipeline
    tasks = dict(global_caption=1, bbox2caption=args.num_tasks,
                 caption2bbox=args.num_tasks if args.stage2 else 0)
    pipeline = gran_pipeline(args.size, tasks, args.box_style, args.seed)
    return DATASETS.build(
        dict(
            type='granvit.GranDataset',
            ann_file=args.ann_file,
            data_root=args.data_root,
            data_prefix=dict(img_path=args.img_prefix),
            pipeline=pipeline,
            on_bad_record='skip'))


def render(inputs, sample, display: int = 512, panel_width: int = 640) -> Image.Image:
    """One PNG: upscaled model input with boxes beside a text panel of the tasks."""
    img = inputs.numpy().transpose(1, 2, 0) if hasattr(inputs, 'numpy') else np.asarray(inputs)
    size = img.shape[0]
    scale = display / size
    canvas = Image.fromarray(np.ascontiguousarray(img)).resize((display, display), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    for box in sample.distill_bboxes.numpy():
        draw.rectangle([float(v) * scale for v in box], outline=(255, 255, 255), width=1)
    lines = [
        f"{osp.basename(sample.img_path)}  {sample.ori_shape[1]}x{sample.ori_shape[0]} -> {size}px  "
        f"{sample.source}  {osp.basename(str(sample.shard))}:{sample.line}"
    ]
    seen = {}
    for k, t in enumerate(sample.tasks):
        colour = TASK_COLOURS.get(t['task'], (255, 255, 0))
        if t['box'] is not None:
            x1, y1, x2, y2 = (v * display for v in t['box'])  # [0, 1] of the padded square = of the input
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
            shift = 16 * seen.get(t['region'], 0)  # several tasks on one region: labels side by side
            seen[t['region']] = seen.get(t['region'], 0) + 1
            draw.text((x1 + 3 + shift, y1 + 2),
                      str(k),
                      fill=colour,
                      font=font,
                      stroke_width=2,
                      stroke_fill=(0, 0, 0))
        lines.append(f"[{k}] {t['task']}")
        lines.extend(textwrap.wrap(f"Q: {t['question']}", 88, subsequent_indent='   '))
        lines.extend(textwrap.wrap(f"A: {t['answer']}", 88, subsequent_indent='   '))
    panel_h = max(display, 18 * len(lines) + 10)
    out = Image.new('RGB', (display + panel_width, panel_h), (255, 255, 255))
    out.paste(canvas, (0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((display + 8, 6 + 18 * i), line, fill=(0, 0, 0), font=ImageFont.load_default(size=13))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', default=None, help='mmengine config with {split}_dataloader.dataset')
    p.add_argument('--output-dir', required=True)
    p.add_argument('--max', type=int, default=20, help='number of images to draw')
    p.add_argument('--split', default='train', help='which <split>_dataloader of the config')
    p.add_argument('--cfg-options', nargs='+', default=None, help='key=value overrides (strings)')
    p.add_argument('--ann-file', default=None, help='config-less: Gran JSONL file(s) or glob')
    p.add_argument('--data-root', default='')
    p.add_argument('--img-prefix', default='images/')
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--box-style', default='decimal3')
    p.add_argument('--num-tasks', type=int, default=4)
    p.add_argument('--stage2', action='store_true', help='also draw Caption2Bbox tasks')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--display', type=int, default=512, help='side of the drawn input image, px')
    args = p.parse_args(argv)
    if not args.config and not args.ann_file:
        p.error('give a config or --ann-file')
    ds = build_dataset(args)
    os.makedirs(args.output_dir, exist_ok=True)
    written = []
    for i in range(min(args.max, len(ds))):
        item = ds[i]
        path = osp.join(args.output_dir, f'{i:05d}.png')
        render(item['inputs'], item['data_samples'], args.display).save(path)
        written.append(path)
    print(f'wrote {len(written)} images to {args.output_dir}')
    return written


if __name__ == '__main__':
    main()
