"""Sub-patch probe of frozen encoders on GranSynth: do the tokens keep where a box edge runs in their patch?

    python tools/analysis_tools/spatial_probe.py --data-root data/gran_synth \
        --encoder random --encoder siglip=data/tiny_siglip/granvit_tiny_siglip.pth \
        --encoder granvit=work_dirs/granvit_pretrain_tiny/iter_1000.pth:backbone.

The measurement behind docs/toy_chain.md's detection finding (pretrained encoders lose box precision): per
encoder, a ridge read-out from each patch's visual token to the box occupancy of its 4x4 sub-cells, scored on
val patches that a box edge crosses, the R^2 of a ridge read-out of the patch's own pixels, and how often a
read-out names the token's own patch position (``granvit_mm/evaluation/spatial_probe.py``). ``--encoder``
takes the same specs as region_probe.py.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from region_probe import build_encoder, encoder_setup, load_split, save_results  # noqa: E402

from granvit_mm.evaluation.spatial_probe import (box_occupancy, patch_pixels, position_accuracy,  # noqa: E402
                                                 spatial_probe)


@torch.no_grad()
def patch_tokens(model, images, batch=64):
    """(B, 3, H, W) -> (B * h * w, C): the visual tokens, one row per patch in raster order."""
    maps = torch.cat([model(images[i:i + batch])[-1] for i in range(0, len(images), batch)])
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]), maps.shape[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--config', default='configs/granvit_pretrain_tiny.py')
    p.add_argument('--encoder', action='append', required=True, help="'random' or NAME=CKPT[:PREFIX]")
    p.add_argument('--seed', type=int, default=0, help='seed of the random init')
    p.add_argument('--limit', type=int, default=1000, help='use the first N train images (0: all)')
    p.add_argument('--cells', type=int, default=4, help='sub-cells per patch side')
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    backbone, visual_layer, img_size = encoder_setup(args.config)
    train = load_split(args.data_root, 'train', img_size, args.limit)
    val = load_split(args.data_root, 'val', img_size)
    results = {}
    for spec in args.encoder:
        name, model = build_encoder(backbone, spec, args.seed, visual_layer)
        tr, grid = patch_tokens(model, train[0])
        va, _ = patch_tokens(model, val[0])
        occ = [box_occupancy(s[1], img_size, grid, args.cells).flatten(0, 2) for s in (train, val)]
        pix = [patch_pixels(s[0], grid).flatten(0, 2) for s in (train, val)]
        results[name] = spatial_probe(tr, occ[0], va, occ[1], pix[0], pix[1])
        results[name]['position_acc'] = position_accuracy(tr, va, grid)
        cells = (f'{k} {v:.1f}' if isinstance(v, float) else f'{k} {v}' for k, v in results[name].items())
        print(f'{name:>18s}  ' + '  '.join(cells), flush=True)
    return save_results(results, args.out)


if __name__ == '__main__':
    sys.exit(main() and 0)
