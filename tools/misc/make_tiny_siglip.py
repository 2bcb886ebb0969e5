"""Train the tiny SigLIP that stands in for SigLIP2, and convert its vision tower to a GranViT checkpoint.

    python tools/misc/make_tiny_siglip.py --data-root data/gran_synth --out-dir data/tiny_siglip
    # -> data/tiny_siglip/ (HF SiglipModel + tokenizer) and data/tiny_siglip/granvit_tiny_siglip.pth
    #    (through tools/model_converters/siglip2_to_granvit.py, the path a real SigLIP2 takes)

Image-text pairs are GranSynth's training images with a global caption (scenes; OCR pages have none).
Prints the held-out image->text retrieval accuracy. Deterministic for a seed; a no-op when the output
exists (``--force`` rebuilds).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_pairs(data_root: str, split: str, size: int, limit: int = 0):
    from granvit_mm.core.image_input import to_model_input
    images, captions = [], []
    with open(osp.join(data_root, 'annotations', f'{split}.jsonl'), encoding='utf-8') as f:
        for line in f:
            rec = json.loads(line)
            if not rec.get('caption'):
                continue
            rgb = np.asarray(Image.open(osp.join(data_root, 'images', rec['image'])).convert('RGB'))
            images.append(torch.from_numpy(to_model_input(rgb, size)[0]))
            captions.append(rec['caption'])
            if limit and len(captions) >= limit:
                break
    return torch.stack(images), captions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--out-dir', default='data/tiny_siglip')
    p.add_argument('--image-size', type=int, default=64)
    p.add_argument('--patch-size', type=int, default=8)
    p.add_argument('--steps', type=int, default=600)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--max-text-len', type=int, default=48)
    p.add_argument('--position-init-std', type=float, default=2.0,
                   help="re-draw the vision position table with this std (0: transformers' own init, "
                        "1/sqrt(width)); the default 2.0 keeps the position in the last layer, which stage "
                        "2's grounding needs (docs/toy_grounding.md)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true')
    args = p.parse_args(argv)
    ckpt = osp.join(args.out_dir, 'granvit_tiny_siglip.pth')
    if osp.isfile(ckpt) and not args.force:
        print(f'[make_tiny_siglip] {ckpt} exists; nothing to do (--force rebuilds)')
        return ckpt
    from granvit_mm.toy.tiny_llm import train_tokenizer
    from granvit_mm.toy.tiny_siglip import (build_tiny_siglip, encode_captions, retrieval_accuracy,
                                            train_siglip)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    images, captions = load_pairs(args.data_root, 'train', args.image_size)
    val_images, val_captions = load_pairs(args.data_root, 'val', args.image_size, limit=64)
    print(f'[make_tiny_siglip] {len(captions)} image-caption pairs from {args.data_root}')
    tokenizer = train_tokenizer(captions, vocab_size=512)
    model = build_tiny_siglip(len(tokenizer), tokenizer.pad_token_id, args.image_size, args.patch_size,
                              max_text_len=args.max_text_len, position_init_std=args.position_init_std,
                              seed=args.seed)
    ids = encode_captions(tokenizer, captions, args.max_text_len)
    val_ids = encode_captions(tokenizer, val_captions, args.max_text_len)
    print(f'[make_tiny_siglip] val image->text top-1 among {len(val_ids)} before: '
          f'{retrieval_accuracy(model, val_images, val_ids):.1f}%')
    train_siglip(model, images, ids, args.steps, args.batch_size, args.lr, args.seed)
    print(f'[make_tiny_siglip] val image->text top-1 among {len(val_ids)} after: '
          f'{retrieval_accuracy(model, val_images, val_ids):.1f}%')
    os.makedirs(args.out_dir, exist_ok=True)
    model.save_pretrained(args.out_dir)
    tokenizer.save_pretrained(args.out_dir)
    subprocess.run([sys.executable, osp.join(REPO, 'tools', 'model_converters', 'siglip2_to_granvit.py'),
                    args.out_dir, ckpt], check=True)
    return ckpt


if __name__ == '__main__':
    main()
