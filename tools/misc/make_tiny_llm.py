"""Build the tiny Qwen2-architecture LLM that the tiny GranViT config freezes (a stand-in for Qwen2.5-1.5B).

    python tools/misc/make_tiny_llm.py --data-root data/gran_synth --out-dir data/tiny_llm

Trains a byte-level BPE tokenizer (Qwen2's split rule, Qwen's special tokens, wrapped as Qwen2TokenizerFast)
on the training split's text, the paper prompts and box text; builds a Qwen2ForCausalLM; pretrains it for a
minute or two on that text in the chat format (a real frozen LLM knows its language before stage 1); and
``save_pretrained``s both, so the head loads it with ``from_pretrained`` like a real checkpoint.
With ``--vision-warmup-steps N`` it is then trained unfrozen for N steps, with a throwaway projector, on the
tokens that a fixed ViT (``--vision-init``: the start encoder) makes of the training images, so that it reads
visual tokens (``granvit_mm/toy/llm_vision_warmup.py``; `make demo` uses 300).
Deterministic for a seed; a no-op when the output was built with the same settings (``--force`` rebuilds).
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys

import torch


def parse_tasks(text: str) -> dict:
    """'global_caption=1,bbox2caption=2.5' -> {'global_caption': 1, 'bbox2caption': 2.5}, checked here so
    that a typo stops the command before the text pretraining rather than after it."""
    from granvit_mm.datasets.region_tasks import check_task_mix
    try:
        pairs = (item.split('=') for item in text.split(','))
        amounts = {name.strip(): float(amount) for name, amount in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected NAME=AMOUNT[,NAME=AMOUNT...], got {text!r}') from None
    try:
        return check_task_mix({name: int(v) if v.is_integer() else v for name, v in amounts.items()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default='data/gran_synth', help='GranSynth (or any Gran JSONL) root')
    p.add_argument('--out-dir', default='data/tiny_llm')
    p.add_argument('--vocab-size', type=int, default=1024)
    p.add_argument('--hidden-size', type=int, default=64)
    p.add_argument('--num-layers', type=int, default=2)
    p.add_argument('--num-heads', type=int, default=4)
    p.add_argument('--num-kv-heads', type=int, default=2)
    p.add_argument('--intermediate-size', type=int, default=256)
    p.add_argument('--steps', type=int, default=400, help='text pretraining steps (0: random weights)')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--seq-len', type=int, default=128)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--max-records', type=int, default=20000)
    p.add_argument('--vision-warmup-steps', type=int, default=0,
                   help='then train it unfrozen for this many steps on the visual tokens of the training '
                   'images, so that it reads them (granvit_mm/toy/llm_vision_warmup.py); 0: text only')
    p.add_argument('--vision-batch-size', type=int, default=32, help='images per warm-up step')
    p.add_argument('--vision-lr', type=float, default=2e-3, help='peak learning rate of the warm-up')
    p.add_argument('--vision-train-vit', action='store_true',
                   help='train the ViT along in the warm-up (default: it stays at --vision-init, measured '
                   'better)')
    p.add_argument('--vision-tasks', type=parse_tasks, default=None,
                   help="the warm-up's turns per image, NAME=AMOUNT,... (region_tasks.py); default: stage "
                   "1's (STAGE1_TASKS)")
    p.add_argument('--vision-img-size', type=int, default=64,
                   help="the warm-up ViT's input size (match the stage-1 config's img_size)")
    p.add_argument('--vision-patch-size', type=int, default=8, help="the warm-up ViT's patch size")
    p.add_argument('--vision-init', default=None,
                   help="the warm-up ViT's weights, a GranViT checkpoint (the start encoder, e.g. the tiny "
                   "SigLIP's); default: random")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true', help='rebuild even if --out-dir holds a model')
    return p.parse_args()


def read_records(data_root: str, max_records: int):
    """Records of the training shards (``annotations/train*.jsonl``; any ``*.jsonl`` if there is none)."""
    files = sorted(glob.glob(osp.join(data_root, 'annotations', 'train*.jsonl')))
    files = files or sorted(glob.glob(osp.join(data_root, '**', '*.jsonl'), recursive=True))
    if not files:
        sys.exit(f'No Gran JSONL under {data_root!r}. Generate GranSynth first: '
                 f'python tools/misc/make_gran_synth.py --out-dir {data_root}')
    records = []
    for path in files:
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    records.append(json.loads(line))
                if len(records) >= max_records:
                    return records
    return records


def main():
    args = parse_args()
    recipe = {k: v for k, v in vars(args).items() if k not in ('out_dir', 'force')}
    recipe_file = osp.join(args.out_dir, 'tiny_llm_recipe.json')
    if osp.isfile(recipe_file) and not args.force:
        with open(recipe_file) as f:
            if json.load(f) == recipe:
                print(f'[make_tiny_llm] {args.out_dir} already holds this model; nothing to do '
                      '(--force rebuilds)')
                return
        print(f'[make_tiny_llm] {args.out_dir} was built with other settings; rebuilding')
    from granvit_mm.toy.tiny_llm import region_chat_corpus, save_tiny_llm
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    texts = region_chat_corpus(read_records(args.data_root, args.max_records))
    print(f'[make_tiny_llm] {len(texts)} texts from {args.data_root}')
    os.makedirs(args.out_dir, exist_ok=True)
    save_tiny_llm(args.out_dir, texts, vocab_size=args.vocab_size, pretrain_steps=args.steps, seed=args.seed,
                  hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads,
                  num_kv_heads=args.num_kv_heads, intermediate_size=args.intermediate_size,
                  pretrain_kwargs=dict(batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr))
    if args.vision_warmup_steps:
        from granvit_mm.toy.llm_vision_warmup import warm_up_llm_on_images
        warm_up_llm_on_images(args.out_dir, args.data_root, steps=args.vision_warmup_steps,
                              seed=args.seed + 1, batch_size=args.vision_batch_size, lr=args.vision_lr,
                              train_vit=args.vision_train_vit, img_size=args.vision_img_size,
                              patch_size=args.vision_patch_size, vit_init=args.vision_init,
                              tasks=args.vision_tasks)
    with open(recipe_file, 'w') as f:
        json.dump(recipe, f, indent=1)
    print(f'[make_tiny_llm] saved to {args.out_dir}')


if __name__ == '__main__':
    main()
