"""Region probe of frozen encoders on GranSynth: linear read-out of object attributes from RoIAligned
features.

    python tools/analysis_tools/region_probe.py --data-root data/gran_synth \
        --encoder random --encoder stage1=work_dirs/granvit_pretrain_tiny/iter_1000.pth:backbone. \
        --encoder teacher=work_dirs/granvit_pretrain_tiny/iter_1000.pth:teacher.module.

Each ``--encoder`` is ``random`` (the backbone config's own init, seeded) or ``NAME=CHECKPOINT[:PREFIX]`` (a
GranViT state dict, a stage-1 checkpoint with prefix ``backbone.`` or ``teacher.module.``, or a converted
SigLIP tower). The backbone architecture comes from ``--config`` (default: the tiny stage-1 config), and the
features are its visual tokens (``granvit_mm.core.visual_tokens``: the block the MLLM reads, before the final
LayerNorm) as a dense map. Prints, per encoder, the val accuracy (%) of size, colour, texture and shape and
their mean.
"""
import argparse
import json
import os.path as osp
import sys

import numpy as np
import torch
from PIL import Image

from granvit_mm.core.gran_record import parse_line
from granvit_mm.core.image_input import to_model_input
from granvit_mm.core.visual_tokens import DEFAULT_VISUAL_LAYER, granvit_token_kwargs
from granvit_mm.toy.gran_synth import ATTRIBUTE_VALUES, ATTRIBUTES, object_regions


def load_split(data_root: str, split: str, img_size: int, limit: int = 0):
    """Model inputs, input-pixel boxes and attribute labels of every object region of a GranSynth split."""
    images, boxes, labels = [], [], {k: [] for k in ATTRIBUTES}
    with open(osp.join(data_root, 'annotations', f'{split}.jsonl'), 'rb') as f:
        for n, raw in enumerate(f):
            if limit and n >= limit:
                break
            rec = parse_line(raw)
            objs = object_regions(rec)
            if not objs:
                continue
            rgb = np.asarray(Image.open(osp.join(data_root, 'images', rec['image'])).convert('RGB'))
            x, geom = to_model_input(rgb, img_size)
            images.append(torch.from_numpy(x))
            boxes.append(torch.from_numpy(geom.to_input(np.array([b for b, _ in objs]))))
            for k in ATTRIBUTES:
                labels[k].extend(ATTRIBUTE_VALUES[k].index(a[k]) for _, a in objs)
    return torch.stack(images), boxes, {k: torch.tensor(v) for k, v in labels.items()}


def build_encoder(backbone_cfg: dict, spec: str, seed: int, visual_layer: int = DEFAULT_VISUAL_LAYER):
    """The encoder as the MLLM reads it: its visual tokens (granvit_mm.core.visual_tokens) as a dense map."""
    from granvit_mm.registry import MODELS
    cfg = dict(backbone_cfg, out_type='featmap', init_cfg=None, **granvit_token_kwargs(visual_layer))
    torch.manual_seed(seed)
    if spec == 'random':
        return 'random', MODELS.build(cfg).eval()
    name, _, rest = spec.partition('=')
    path, _, prefix = rest.partition(':')
    cfg['init_cfg'] = dict(type='Pretrained', checkpoint=path, **({'prefix': prefix} if prefix else {}))
    model = MODELS.build(cfg)
    model.init_weights()
    return name, model.eval()


def encoder_setup(config: str):
    """(backbone config, visual layer, input side) of a stage-1 config: the encoders every probe builds."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    model_cfg = cfg.model if 'model' in cfg else cfg
    backbone = model_cfg.backbone.to_dict()
    img_size = backbone['img_size'] if isinstance(backbone['img_size'], int) else backbone['img_size'][0]
    return backbone, model_cfg.get('visual_layer', DEFAULT_VISUAL_LAYER), img_size


def save_results(results: dict, out: str = None) -> dict:
    if out:
        with open(out, 'w') as f:
            json.dump(results, f, indent=1)
    return results


@torch.no_grad()
def features(model, images, boxes, img_size, batch=64, roi_size=2):
    from granvit_mm.evaluation.region_probe import region_features
    out = []
    for i in range(0, len(images), batch):
        fmap = model(images[i:i + batch])[-1]
        out.append(region_features(fmap, boxes[i:i + batch], img_size, roi_size=roi_size))
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--config', default='configs/granvit_pretrain_tiny.py', help='config whose model.backbone '
                   'gives the architecture')
    p.add_argument('--encoder', action='append', required=True, help="'random' or NAME=CKPT[:PREFIX]")
    p.add_argument('--seed', type=int, default=0, help='seed of the random init')
    p.add_argument('--limit', type=int, default=0, help='use the first N train images (0: all)')
    p.add_argument('--roi-size', type=int, default=2,
                   help='RoIAlign grid per region side (1: one pooled vector per region, about what an LLM '
                   'attention head averaging over the region can see)')
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    backbone, visual_layer, img_size = encoder_setup(args.config)
    train = load_split(args.data_root, 'train', img_size, args.limit)
    val = load_split(args.data_root, 'val', img_size)
    print(f'{len(train[2]["shape"])} train / {len(val[2]["shape"])} val object regions at {img_size} px')
    from granvit_mm.evaluation.region_probe import probe_attributes
    results = {}
    for spec in args.encoder:
        name, model = build_encoder(backbone, spec, args.seed, visual_layer)
        train_x = features(model, train[0], train[1], img_size, roi_size=args.roi_size)
        val_x = features(model, val[0], val[1], img_size, roi_size=args.roi_size)
        acc = probe_attributes(train_x, train[2], val_x, val[2])
        results[name] = acc
        print(f'{name:>16s}  ' + '  '.join(f'{k} {v:5.1f}' for k, v in acc.items()), flush=True)
    return save_results(results, args.out)


if __name__ == '__main__':
    sys.exit(main() and 0)
