"""Time one stage-1 training step (forward + backward + optimiser + EMA-teacher update) of a config.

    python tools/analysis_tools/benchmark_train_step.py configs/granvit_pretrain_tiny.py [--device cpu|cuda]
        [--batch-size N] [--steps N] [--warmup N] [--synthetic] [--turns K] [--standin-llm qwen2.5-1.5b]
        [--variants packed,separate,full_vocab,no_distill] [--cfg-options k=v ...]

Variants, each measured in its own process (so each peak memory is its own) on the same batch and the same
initial weights:
- ``packed``: the training step as configured: an image's K turns packed after ONE shared prefix (system +
  image tokens), logits only at the answer tokens, self-distillation on;
- ``separate``: the naive way: K sequences per image, each repeating the prefix and its image tokens;
- ``full_vocab``: packed, but ``lm_head`` over every position (the (B, L, V) logits a plain causal-LM loss
  computes) instead of the answer tokens only;
- ``no_distill``: packed without the distillation loss and without the teacher (its crops' forward and the
  EMA).
The caption loss of the first step must agree across packed / separate / full_vocab (same math); the script
prints it so a regression in packing shows.

Reported: median step time, images/s, peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS of the
process and its growth over the resident size before the first step), FLOPs per step counted by
``torch.utils.flop_counter`` (matmuls, attention, convolutions; executed FLOPs, so activation checkpointing's
recompute counts), achieved TFLOP/s and, on CUDA, MFU against the device's dense bf16 peak.

Data: the config's training pipeline (``--synthetic``: K questions per image with fixed answers and random
boxes, for configs whose data is not on this machine). ``--standin-llm qwen2.5-1.5b`` replaces
``model.head.llm_path`` by a randomly initialised Qwen2 of Qwen2.5-1.5B's widths (28 layers, hidden 1536,
vocabulary 151,936; ``--standin-layers`` fewer) and ``--random-vit`` drops the ViT's pretrained init, so the
paper config's step can be measured with no weights on disk. Timing goals live here, not in tests.
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction

VARIANTS = ('packed', 'separate', 'full_vocab', 'no_distill')
# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity), matched on torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = (('H200', 989.0), ('H100 NVL', 835.0), ('H100 PCIe', 756.0), ('H100', 989.0),
                    ('GH200', 989.0), ('A100', 312.0), ('L40S', 362.0), ('A10', 125.0), ('4090', 165.2),
                    ('V100', 125.0))
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                  tie_word_embeddings=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Benchmark a stage-1 training step')
    p.add_argument('config')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--batch-size', type=int, default=None, help='images per step (default: the config\'s)')
    p.add_argument('--steps', type=int, default=5, help='timed steps per variant')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--variants', default=','.join(VARIANTS))
    p.add_argument('--synthetic', action='store_true',
                   help='synthetic questions/boxes instead of the dataset')
    p.add_argument('--turns', type=int, default=5, help='--synthetic: questions per image (K)')
    p.add_argument('--standin-llm', choices=['qwen2.5-1.5b'], default=None)
    p.add_argument('--standin-layers', type=int, default=None)
    p.add_argument('--random-vit', action='store_true', help='drop the ViT init_cfg (no checkpoint needed)')
    p.add_argument('--peak-tflops', type=float, default=None, help='device peak for MFU (default: by name)')
    p.add_argument('--threads', type=int, default=None, help='torch threads on CPU')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--out', default=None, help='also write the results as JSON here')
    p.add_argument('--variant', default=None, help=argparse.SUPPRESS)  # child process: one variant
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------ model and data
def standin_llm(out_dir: str, layers=None, device: str = 'cpu') -> str:
    """A random Qwen2 with Qwen2.5-1.5B's widths and the toy tokenizer (ids < its vocabulary)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from granvit_mm.toy.tiny_llm import region_chat_corpus, toy_records, train_tokenizer
    tok = train_tokenizer(region_chat_corpus(toy_records(seed=0)), 512)
    cfg = Qwen2Config(**dict(QWEN25_15B, num_hidden_layers=layers or QWEN25_15B['num_hidden_layers']),
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def load_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.random_vit:
        cfg.model.backbone.init_cfg = None
    return cfg


def build(cfg: Config, device: str):
    from mmengine.optim import build_optim_wrapper

    from granvit_mm.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model = model.to(device)
    model.train()
    optim_cfg = dict(cfg.optim_wrapper)
    if device == 'cpu' and optim_cfg.get('type') == 'AmpOptimWrapper':
        optim_cfg = dict(optim_cfg, type='OptimWrapper')  # bf16 autocast needs a GPU here
        optim_cfg.pop('dtype', None)
        optim_cfg.pop('loss_scale', None)
    return model, build_optim_wrapper(model, optim_cfg)


def real_batch(cfg: Config, batch_size: int) -> dict:
    from mmengine.dataset import pseudo_collate

    from granvit_mm.registry import DATASETS
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    return pseudo_collate([dataset[(0, i)] for i in range(batch_size)])


def synthetic_batch(img_size: int, batch_size: int, turns: int) -> dict:
    from granvit_mm.core.prompts import bbox2caption_question, global_caption_question
    from granvit_mm.structures import GranDataSample
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, img_size, img_size), dtype=torch.uint8, generator=g))
        boxes = torch.rand(turns, 4, generator=g)
        boxes = torch.cat([boxes[:, :2].min(boxes[:, 2:]), boxes[:, :2].max(boxes[:, 2:]) + 0.05], 1)
        boxes = boxes.clamp(0, 1)
        tasks = [dict(task='global_caption', question=global_caption_question(), box=None, region=-1,
                      answer='a large red striped circle in the top left and a small blue square below it')]
        tasks += [dict(task='bbox2caption', question=bbox2caption_question(b.tolist()), box=b.tolist(),
                       region=k, answer='a large red striped circle')
                  for k, b in enumerate(boxes[:turns - 1])]
        ds = GranDataSample()
        ds.tasks = tasks
        ds.distill_bboxes = boxes * img_size
        samples.append(ds)
    return dict(inputs=inputs, data_samples=samples)


# ---------------------------------------------------------------------------------------------- variants
def _separate_loss(head, visual_embeds, data_samples):
    """Every turn in its own sequence: prefix + image tokens repeated K times."""
    from granvit_mm.models.utils.packing import collate_packed, pack_turns
    seqs, owners = [], []
    for i, ds in enumerate(data_samples):
        for t in ds.tasks:
            turn = head.chat.turn(t['question'], t['answer'])
            seqs.append(pack_turns(head.chat.prefix_ids, visual_embeds.shape[1], [turn], head.max_length))
            owners.append(i)
    out = head.token_losses(visual_embeds[owners], collate_packed(seqs, head.pad_id))
    return dict(loss_caption=out['loss'].mean(), acc_caption=out['correct'].float().mean().detach())


def _full_vocab_token_losses(head, visual_embeds, batch):
    """As RegionARHead.token_losses, but lm_head over all L positions, then CE with ignore_index."""
    from granvit_mm.core.chat_format import IGNORE_INDEX
    from granvit_mm.models.utils.packing import shared_prefix_mask
    batch = {k: v.to(visual_embeds.device) for k, v in batch.items()}
    embeds = head.embed(visual_embeds, batch['input_ids'])
    mask = shared_prefix_mask(batch['segment_ids'], embeds.dtype)
    hidden = head.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask,
                                    position_ids=batch['position_ids'], use_cache=False)[0]
    logits = head.llm.get_output_embeddings()(hidden[:, :-1]).float()  # (B, L-1, V)
    target = batch['labels'][:, 1:]
    valid = target != IGNORE_INDEX
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction='none',
                           ignore_index=IGNORE_INDEX).view_as(target)[valid]
    return dict(loss=loss, correct=logits[valid].argmax(-1) == target[valid], valid=valid)


def apply_variant(model, name: str) -> None:
    head = model.head
    if name == 'separate':
        head.loss = types.MethodType(_separate_loss, head)
    elif name == 'full_vocab':
        head.token_losses = types.MethodType(_full_vocab_token_losses, head)
    elif name == 'no_distill':
        model.distill_loss = None
        model.teacher = None  # no crops' forward, no EMA update
    elif name != 'packed':
        raise ValueError(f'unknown variant {name!r}; choose from {VARIANTS}')


# ------------------------------------------------------------------------------------------ measurement
def _rss_kib() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def step_flops(model, optim_wrapper, data) -> int:
    """FLOPs of one forward + backward (the optimiser and the EMA are elementwise: not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        with optim_wrapper.optim_context(model):
            batch = model.data_preprocessor(data, True)
            losses = model(**batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    optim_wrapper.zero_grad()
    return int(counter.get_total_flops())


def measure(args, cfg) -> dict:
    device = args.device
    if device == 'cpu' and args.threads:
        torch.set_num_threads(args.threads)
    model, optim_wrapper = build(cfg, device)
    apply_variant(model, args.variant)
    bs = args.batch_size or cfg.train_dataloader.batch_size
    data = (synthetic_batch(model.backbone.img_size[0] if isinstance(model.backbone.img_size, (tuple, list))
                            else model.backbone.img_size, bs, args.turns)
            if args.synthetic else real_batch(cfg, bs))
    flops = step_flops(model, optim_wrapper, data)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_kib()
    times, first = [], None
    for i in range(args.warmup + args.steps):
        _sync(device)
        t0 = time.perf_counter()
        log = model.train_step(data, optim_wrapper)  # forward, backward, optimiser step, EMA post-hook
        _sync(device)
        if i == 0:
            first = {k: float(v) for k, v in log.items()}
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    out = dict(variant=args.variant, device=device, batch_size=bs, step_s=step, images_per_s=bs / step,
               gflop_per_step=flops / 1e9, achieved_tflops=flops / step / 1e12,
               loss_caption_step0=first.get('loss_caption'), teacher=model.teacher is not None)
    if device == 'cuda':
        out['peak_mem_gib'] = torch.cuda.max_memory_allocated() / 2**30
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)
        out.update(device_name=name, peak_tflops=peak,
                   mfu=(flops / step / 1e12 / peak) if peak else None)
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out.update(peak_rss_gib=peak_kib / 2**20, step_rss_growth_gib=max(0, peak_kib - rss0) / 2**20)
    return out


def table(rows) -> str:
    base = next((r for r in rows if r['variant'] == 'packed'), rows[0])
    cuda = rows[0]['device'] == 'cuda'
    head = ('| variant | step (s) | images/s | vs packed | GFLOP/step | TFLOP/s | '
            + ('peak mem (GiB) | MFU |' if cuda else 'peak RSS (GiB) | RSS growth in steps (GiB) |')
            + ' caption loss, step 0 |')
    lines = [head, '|' + ' --- |' * (head.count('|') - 1)]
    for r in rows:
        mem = (f"{r['peak_mem_gib']:.2f} | {r['mfu'] * 100:.1f}% |" if cuda and r.get('mfu') is not None
               else f"{r.get('peak_mem_gib', 0):.2f} | - |" if cuda
               else f"{r['peak_rss_gib']:.2f} | {r['step_rss_growth_gib']:.2f} |")
        lines.append(f"| {r['variant']} | {r['step_s']:.3f} | {r['images_per_s']:.1f} | "
                     f"{base['step_s'] / r['step_s']:.2f}x | {r['gflop_per_step']:.1f} | "
                     f"{r['achieved_tflops']:.3f} | "
                     f"{mem} {r['loss_caption_step0']:.5f} |")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args)
    if args.variant:  # child: one variant, one JSON line
        print('RESULT ' + json.dumps(measure(args, cfg)), flush=True)
        return
    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.standin_llm:
            print(f'building a random {args.standin_llm} stand-in LLM in {tmp} ...', flush=True)
            llm = standin_llm(osp.join(tmp, 'llm'), args.standin_layers, args.device)
            argv = [a for a in argv] + ['--cfg-options', f'model.head.llm_path={llm}']
            argv = _drop_flag(argv, '--standin-llm', 1)
        rows = []
        for name in args.variants.split(','):
            proc = subprocess.run([sys.executable, osp.abspath(__file__)] + argv + ['--variant', name],
                                  capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
            if proc.returncode or not line:
                raise SystemExit(f'variant {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}')
            rows.append(json.loads(line[-1][len('RESULT '):]))
            print(f"{name}: {rows[-1]['step_s']:.3f} s/step", flush=True)
    print(f'\n{args.config}, device {rows[0].get("device_name", args.device)}, '
          f'batch {rows[0]["batch_size"]}, '
          f'median of {args.steps} steps after {args.warmup} warm-up\n')
    print(table(rows))
    losses = [r['loss_caption_step0'] for r in rows if r['variant'] in ('packed', 'separate', 'full_vocab')]
    if len(losses) > 1:
        print(f'\ncaption loss of step 0, packed / separate / full_vocab: max difference '
              f'{max(losses) - min(losses):.2e} (the same math; float round-off only)')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=2)


def _drop_flag(argv, flag, nvalues):
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        if a == flag:
            skip = nvalues
            continue
        if a.startswith(flag + '='):
            continue
        out.append(a)
    return out


if __name__ == '__main__':
    main()
