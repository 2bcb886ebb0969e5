"""Throughput of GranViT against transformers' SiglipVisionModel with the same config, weights and input.

    python tools/analysis_tools/benchmark_backbone.py --arch b --img-size 224 --batch-size 4 --iters 10

Both models are built from one SigLIP config; GranViT gets the HF weights through the converter's key map, so
outputs are checked equal before timing. Runs alternate (ours, HF sdpa[, HF eager]) inside one process so
background load hits all of them alike; the median time of each is reported as images/s with the ratio
ours / HF. HF's attention-pool head is switched off (``vision_use_head=False``): GranViT has none.
"""
import argparse
import statistics
import time

import torch

from granvit_mm.core.siglip_keys import convert_siglip_vision
from granvit_mm.models.backbones import GranViT

DTYPES = dict(fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)


def parse_args():
    parser = argparse.ArgumentParser(description='GranViT vs HF SiglipVisionModel forward throughput')
    parser.add_argument('--arch', default='b', choices=['tiny', 'b', 'l', 'so400m', 'g'])
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--iters', type=int, default=10, help='timed runs of each model')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default=None, choices=list(DTYPES), help='fp32 on cpu, bf16 on cuda')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (CPU)')
    parser.add_argument('--hf-attn', default='sdpa,eager', help='HF attention implementations to time')
    return parser.parse_args()


def build_pair(arch: str, img_size: int, patch_size: int, attn_impls, device, dtype):
    """GranViT and one HF SiglipVisionModel per attention implementation, all with the same weights."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    a = GranViT.arch_zoo[arch]
    config = SiglipVisionConfig(
        hidden_size=a['embed_dims'],
        intermediate_size=a['feedforward_channels'],
        num_hidden_layers=a['num_layers'],
        num_attention_heads=a['num_heads'],
        image_size=img_size,
        patch_size=patch_size,
        vision_use_head=False)
    hf_models = {}
    for impl in attn_impls:
        torch.manual_seed(0)
        hf_models[impl] = SiglipVisionModel._from_config(config, attn_implementation=impl)
    ours = GranViT(arch=arch, img_size=img_size, patch_size=patch_size, out_type='raw')
    ours.load_state_dict(convert_siglip_vision(next(iter(hf_models.values())).state_dict()))
    models = dict(granvit=ours, **{f'hf_{k}': v for k, v in hf_models.items()})
    return {k: m.to(device=device, dtype=dtype).eval() for k, m in models.items()}


def run(name, model, x):
    if name == 'granvit':
        return model(x)[0]
    return model(pixel_values=x).last_hidden_state


def sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype or ('bf16' if args.device.startswith('cuda') else 'fp32')]
    impls = [s for s in args.hf_attn.split(',') if s]
    models = build_pair(args.arch, args.img_size, args.patch_size, impls, args.device, dtype)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=args.device, dtype=dtype)
    times = {k: [] for k in models}
    with torch.inference_mode():
        ref = run('granvit', models['granvit'], x).float()
        for name, model in models.items():
            diff = (run(name, model, x).float() - ref).abs().max().item()
            print(f'max |{name} - granvit| = {diff:.3g}')
        for it in range(args.warmup + args.iters):
            for name, model in models.items():
                sync(args.device)
                start = time.perf_counter()
                run(name, model, x)
                sync(args.device)
                if it >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    print(f'arch={args.arch} img={args.img_size} patch={args.patch_size} batch={args.batch_size} '
          f'dtype={dtype} device={args.device} threads={torch.get_num_threads()} iters={args.iters}')
    speed = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    for name, ips in speed.items():
        print(f'{name:>10}: {ips:8.2f} img/s (median {1000 * statistics.median(times[name]):.1f} ms/batch)')
    for impl in impls:
        print(f'ratio granvit / hf_{impl}: {speed["granvit"] / speed[f"hf_{impl}"]:.3f}')


if __name__ == '__main__':
    main()
