"""Can the named region's box be read from frozen visual tokens? A direct read-out, no LLM (issue #20).

One caption-query cross-attention over a tower's ``hidden_states[layer]`` (the caption as a bag of its words)
and a box head, trained with L1 + GIoU on GranSynth train regions, scored Acc@IoU0.5 on val as the grounding
metrics score. ``--position learned|fixed`` adds a learned table or the fixed 2D code of ``stage2_sweep.py``
to the tokens: a diagnostic of whether the tokens carry their patch's position (docs/toy_grounding.md).

    python tools/analysis_tools/token_probe.py --data-root data/gran_synth \
        --tower work_dirs/granvit_pretrain_tiny/hf_encoder [--layer -1] [--position none|learned|fixed]
"""
import argparse
import glob
import json
import os.path as osp
import sys

import numpy as np
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path[:0] = [ROOT, osp.dirname(osp.abspath(__file__))]

from granvit_mm.core.geometry import SquareGeometry  # noqa: E402
from granvit_mm.core.image_input import to_model_input  # noqa: E402


def load(root: str, split: str, size: int):
    """Model inputs of every image and (image index, caption words, box in [0, 1] of the square, kind)."""
    path = sorted(glob.glob(osp.join(root, 'annotations', f'{split}*.jsonl')))[0]
    pixels, regions = [], []
    with open(path, encoding='utf-8') as f:
        for i, rec in enumerate(map(json.loads, f)):
            rgb = np.asarray(Image.open(osp.join(root, 'images', rec['image'])).convert('RGB'))
            pixels.append(to_model_input(rgb, size)[0])
            geometry = SquareGeometry(rec['height'], rec['width'], size)
            regions += [(i, r['caption'].split(), geometry.to_normalized(r['bbox'])[0], r['kind'])
                        for r in rec['regions']]
    return torch.from_numpy(np.stack(pixels)), regions


class Probe(torch.nn.Module):

    def __init__(self, vocab: int, dim: int, n_tokens: int, learned_position: bool):
        super().__init__()
        self.words = torch.nn.EmbeddingBag(vocab, 64, mode='sum')
        self.key, self.value = torch.nn.Linear(dim, 64), torch.nn.Linear(dim, 64)
        self.pos = torch.nn.Parameter(torch.zeros(n_tokens, dim)) if learned_position else None
        self.out = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.GELU(), torch.nn.Linear(128, 4))

    def forward(self, vis, words, offsets):
        vis = vis + self.pos if self.pos is not None else vis
        query = self.words(words, offsets)
        attn = torch.softmax(torch.einsum('bd,bnd->bn', query, self.key(vis)) / 8, -1)
        out = self.out(torch.cat([torch.einsum('bn,bnd->bd', attn, self.value(vis)), query], -1))
        centre, size = out[:, :2].sigmoid(), out[:, 2:].sigmoid() * 0.6
        return torch.cat([centre - size / 2, centre + size / 2], -1)


def main(argv=None) -> None:
    from stage2_sweep import position_code
    from torchvision.ops import box_iou, generalized_box_iou_loss
    from transformers import SiglipVisionModel
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--tower', required=True, help='an HF SigLIP vision tower directory')
    p.add_argument('--layer', type=int, default=-1, help='hidden_states index (-1: the visual tokens)')
    p.add_argument('--position', choices=('none', 'learned', 'fixed'), default='none')
    p.add_argument('--image-size', type=int, default=64)
    p.add_argument('--iters', type=int, default=3000)
    args = p.parse_args(argv)
    train_px, train = load(args.data_root, 'train', args.image_size)
    val_px, val = load(args.data_root, 'val', args.image_size)
    vocab = {w: k for k, w in enumerate(sorted({w for _, ws, _, _ in train + val for w in ws}))}
    tower = SiglipVisionModel.from_pretrained(args.tower).eval()
    with torch.no_grad():
        train_vis, val_vis = (tower(px, output_hidden_states=True).hidden_states[args.layer]
                              for px in (train_px, val_px))
    if args.position == 'fixed':
        code = position_code(train_vis.shape[1], train_vis.shape[2]) * train_vis.pow(2).mean().sqrt()
        train_vis, val_vis = train_vis + code, val_vis + code

    def batch(regions, vis):
        words = torch.tensor([vocab[w] for _, ws, _, _ in regions for w in ws])
        offsets = torch.tensor(np.cumsum([0] + [len(ws) for _, ws, _, _ in regions[:-1]]))
        return (vis[torch.tensor([r[0] for r in regions])], words, offsets,
                torch.from_numpy(np.stack([r[2] for r in regions])))

    torch.manual_seed(0)
    probe = Probe(len(vocab), train_vis.shape[-1], train_vis.shape[1], args.position == 'learned')
    opt = torch.optim.AdamW(probe.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    kinds = np.array([r[3] for r in val])
    for it in range(args.iters):
        vis, words, offsets, boxes = batch([train[i] for i in rng.choice(len(train), 64)], train_vis)
        pred = probe(vis, words, offsets)
        loss = (pred - boxes).abs().sum(-1).mean() + generalized_box_iou_loss(pred, boxes, reduction='mean')
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (it + 1) % 500 == 0 or it + 1 == args.iters:
            with torch.no_grad():
                vis, words, offsets, boxes = batch(val, val_vis)
                hit = (box_iou(probe(vis, words, offsets), boxes).diag() >= 0.5).numpy()
            per_kind = ' '.join(f'{k} {hit[kinds == k].mean() * 100:.1f}' for k in sorted(set(kinds)))
            print(f'iter {it + 1}: train loss {loss.item():.3f}  val Acc@0.5 {hit.mean() * 100:.1f} '
                  f'({per_kind})', flush=True)


if __name__ == '__main__':
    main()
