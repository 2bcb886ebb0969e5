"""Speed and memory of the evaluation protocol, figures side by side in one run (docs/evaluation.md).

    # CPU, tiny (after `make eval-demo`): the stage-3 step of the tiny config, and questions/s of lmms-eval
    # against the project's own evaluation (greedy_answers, as eval_stage2.py) on the same REC questions
    python tools/analysis_tools/benchmark_eval_protocol.py \
        --stage3-config projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_instruct_cpu_stage3.py \
        --stage3-checkpoint work_dirs/eval_demo/granvit_stage3/iter_300.pth \
        --export work_dirs/eval_demo/granvit_export --tasks-dir work_dirs/eval_demo/lmms_tasks --questions 100
    # GPU: the stage-3 step at the paper's widths (SigLIP2 L/16 @ 512 -> 1024 visual tokens, Qwen2.5-1.5B),
    # random weights, bf16: step time and peak memory, ViT frozen and trainable
    python tools/analysis_tools/benchmark_eval_protocol.py --step-widths 1.5b --device cuda

``--step-widths tiny|1.5b`` measures the step with transformers' ``LlavaForConditionalGeneration`` built from
configs (the computation of XTuner's LLaVAModel: tower -> projector -> LLM on the merged sequence, loss on the
answer), so it runs where only torch + transformers are installed (a GPU box without XTuner); ``tiny`` is the
same code at the tiny widths, for checking on a CPU. ``--stage3-config`` measures the real XTuner model and
dataset of a config instead. Each part is skipped, with the reason, when what it needs is missing.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WIDTHS = {  # (vision tower, LLM) of the step benchmark
    'tiny': (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=64, patch_size=8),
             dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=400)),
    '1.5b': (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=512, patch_size=16),  # SigLIP2 L/16 @ 512
             dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, tie_word_embeddings=True)),
}


def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def timed_steps(step, steps: int, warmup: int, device: str):
    for _ in range(warmup):
        step()
    _sync(device)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def llava_step(widths: str, device: str, batch: int, text_len: int, steps: int, warmup: int,
               freeze_vit: bool, grad_ckpt: bool) -> dict:
    """Median fwd + bwd + AdamW step of a randomly initialised LLaVA at ``widths`` (projector + LLM trained).

    As the paper config trains (XTuner's ``AmpOptimWrapper(dtype='bfloat16')``): float32 weights and AdamW
    states, bf16 autocast on CUDA (float32 on CPU), activation checkpointing as XTuner's default
    (``grad_ckpt``). One device, no ZeRO: DeepSpeed ZeRO-2 over 8 GPUs shards the gradients and AdamW states
    further."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, Qwen2Config, SiglipVisionConfig
    vision, text = WIDTHS[widths]
    n_visual = (vision['image_size'] // vision['patch_size'])**2
    text_cfg = Qwen2Config(max_position_embeddings=max(4096, n_visual + text_len + 8), **text)
    image_token = text['vocab_size'] - 1
    config = LlavaConfig(vision_config=SiglipVisionConfig(**vision).to_dict(), text_config=text_cfg.to_dict(),
                         image_token_index=image_token, vision_feature_layer=-1,
                         vision_feature_select_strategy='full', image_seq_length=n_visual)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).to(device=device).train()
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(use_reentrant=False))
    tower = model.get_submodule('model.vision_tower' if hasattr(model,
                                                                'model') else 'vision_tower')  # 5.x / 4.x
    for p in tower.parameters():
        p.requires_grad_(not freeze_vit)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, image_token - 1, (batch, n_visual + text_len), generator=g)
    ids[:, :n_visual] = image_token
    labels = ids.clone()
    labels[:, :n_visual + text_len // 2] = -100  # loss on the answer half
    inputs = dict(input_ids=ids.to(device), labels=labels.to(device),
                  attention_mask=torch.ones_like(ids).to(device),
                  pixel_values=torch.randn(batch, 3, vision['image_size'], vision['image_size'], generator=g)
                  .to(device))

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == 'cuda'):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    median = timed_steps(step, steps, warmup, device)
    out = dict(part='stage-3 step (transformers LLaVA, random init)', widths=widths, device=device,
               amp='bf16' if device == 'cuda' else 'fp32', grad_ckpt=grad_ckpt, batch=batch,
               tokens=n_visual + text_len,
               visual_tokens=n_visual, vit='frozen' if freeze_vit else 'trainable',
               trainable_params_m=round(sum(p.numel() for p in params) / 1e6, 1),
               step_s=round(median, 4), samples_per_s=round(batch / median, 2))
    if device == 'cuda':
        out['peak_mem_gib'] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out['gpu'] = torch.cuda.get_device_name()
    model = opt = None  # free them (step() shares these cells, so not `del`)
    return out


def config_step(config: str, cfg_options: dict, steps: int, warmup: int) -> dict:
    """Median step of the config's own XTuner model on batches of its own dataset (CPU, float32)."""
    from mmengine.config import Config
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.registry import BUILDER
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model).train()
    dataset = BUILDER.build(cfg.train_dataloader.dataset)
    batch = cfg.train_dataloader.batch_size
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.get('lr', 1e-5))
    batches = [default_collate_fn([dataset[(i * batch + j) % len(dataset)] for j in range(batch)])
               for i in range(steps + warmup)]
    it = iter(batches)

    def step():
        data = next(it)['data']
        loss = model(dict(data), mode='loss')['loss']
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    median = timed_steps(step, steps, warmup, 'cpu')
    return dict(part='stage-3 step (XTuner model + dataset of the config)', config=osp.basename(config),
                device='cpu', batch=batch, threads=torch.get_num_threads(), step_s=round(median, 4),
                samples_per_s=round(batch / median, 2))


def rec_questions(tasks_dir: str, n: int):
    """The first ``n`` questions of the gransynth_rec copy, as lmms-eval sees them: (RGB image, caption,
    row)."""
    import numpy as np
    from datasets import load_dataset
    ds = load_dataset('parquet', data_files={'test': osp.join(tasks_dir, 'data', 'gransynth_rec.parquet')},
                      cache_dir=osp.join(tasks_dir, '.cache'))['test']
    return [(np.asarray(r['image'].convert('RGB')), r['answer'][0],
             r) for r in ds.select(range(min(n, len(ds))))]


def own_eval_speed(config: str, checkpoint: str, tasks_dir: str, n: int, cfg_options: dict) -> dict:
    """The project's evaluation (greedy_answers of the XTuner model, questions of an image batched, as
    eval_stage2.py) on lmms-eval's first ``n`` REC questions: questions/s and Acc@0.5 in original
    coordinates."""
    from mmengine.config import Config

    from granvit_mm.benchmarks.lmms_tasks import answer_box
    from granvit_mm.core.image_input import to_model_input
    from granvit_mm.core.prompts import caption2bbox_question
    from granvit_mm.xtuner.llava_model import greedy_answers
    from granvit_mm.xtuner.stage2_eval import load_stage2
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    t0 = time.perf_counter()
    model, tokenizer = load_stage2(cfg, checkpoint)
    t_load = time.perf_counter() - t0
    qs = rec_questions(tasks_dir, n)
    size = model.visual_encoder.config.image_size
    t0 = time.perf_counter()
    hits = 0
    for i in range(0, len(qs), 16):
        chunk = qs[i:i + 16]
        pixels = torch.stack([torch.from_numpy(to_model_input(im, size)[0]) for im, _, _ in chunk])
        answers = greedy_answers(model, tokenizer, pixels, [[caption2bbox_question(c)] for _, c, _ in chunk],
                                 max_new_tokens=32)
        for (im, _, row), [ans] in zip(chunk, answers):
            pred = answer_box(ans, im.shape[1], im.shape[0])
            x, y, w, h = row['bbox']
            truth = [x / im.shape[1], y / im.shape[0], (x + w) / im.shape[1], (y + h) / im.shape[0]]
            ix = max(0.0, min(pred[2], truth[2]) - max(pred[0], truth[0]))
            iy = max(0.0, min(pred[3], truth[3]) - max(pred[1], truth[1]))
            union = (pred[2] - pred[0]) * (pred[3] - pred[1]) + (truth[2] - truth[0]) * (truth[3] - truth[1])
            hits += ix * iy / max(union - ix * iy, 1e-12) >= 0.5
    t = time.perf_counter() - t0
    return dict(part='own eval (greedy_answers, 16 images a batch)', questions=len(qs),
                load_s=round(t_load, 2),
                answer_s=round(t, 2), questions_per_s=round(len(qs) / t, 2),
                acc05=round(100 * hits / len(qs), 2))


def lmms_eval_speed(export: str, tasks_dir: str, n: int, lmms_python: str, work_dir: str) -> dict:
    """``python -m lmms_eval --model llava_hf`` on the same ``n`` questions (``--limit``): wall and eval
    time."""
    out_dir = osp.join(work_dir, 'lmms_speed')
    cmd = [lmms_python, '-m', 'lmms_eval', '--model', 'llava_hf', '--model_args',
           f'pretrained={osp.abspath(export)},device=cpu,device_map=cpu,trust_remote_code=True',
           '--tasks', 'gransynth_rec', '--include_path', tasks_dir, '--batch_size', '1', '--limit', str(n),
           '--output_path', out_dir]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    res = json.load(open(sorted(glob.glob(osp.join(out_dir, '*', '*_results.json')))[-1]))
    gen = res.get('throughput', {}).get('total_elapsed_time') if isinstance(res.get('throughput'),
                                                                            dict) else None
    out = dict(part='lmms-eval llava_hf (batch 1)', questions=n, wall_s=round(wall, 2),
               questions_per_s_wall=round(n / wall, 2),
               acc05=round(100 * res['results']['gransynth_rec']['refcoco_ACC@0.5,none'], 2))
    if gen:
        out.update(generate_s=round(gen, 2), questions_per_s_generate=round(n / gen, 2))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--step-widths', choices=list(WIDTHS), default=None,
                   help='the transformers-only step at these widths (tiny: the same code, CPU-sized)')
    p.add_argument('--batch', type=int, default=None, help='step batch (default: 4 at 1.5b, 16 at tiny)')
    p.add_argument('--text-len', type=int, default=None,
                   help='text tokens after the image (default 1024 / 64)')
    p.add_argument('--no-grad-ckpt', action='store_true',
                   help='no activation checkpointing (XTuner default: on)')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--stage3-config', default=None, help='measure this XTuner config\'s step (CPU)')
    p.add_argument('--stage3-checkpoint', default=None, help='its trained checkpoint (own eval speed)')
    p.add_argument('--cfg-options', nargs='+', default=None, help='config overrides k=v')
    p.add_argument('--export', default=None, help='a transformers export of the same checkpoint (lmms-eval)')
    p.add_argument('--tasks-dir', default=None, help='lmms_eval_tasks.py gransynth output')
    p.add_argument('--questions', type=int, default=100)
    p.add_argument('--lmms-python', default=osp.join(REPO, '.venv-lmms', 'bin', 'python'))
    p.add_argument('--work-dir', default='work_dirs/benchmark_eval_protocol')
    p.add_argument('--out', default=None, help='write the figures as JSON here')
    args = p.parse_args(argv)
    cfg_options = None
    if args.cfg_options:
        from mmengine.config import DictAction
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest='o')(None, ns, args.cfg_options)
        cfg_options = ns.o
    rows = []

    def attempt(name, fn, *a):
        try:
            rows.append(fn(*a))
        except ImportError as err:
            rows.append(dict(part=name, skipped=f'missing package: {err.name or err}'))
        except (FileNotFoundError, subprocess.CalledProcessError) as err:
            rows.append(dict(part=name, skipped=str(err).splitlines()[0][:300]))
        except torch.cuda.OutOfMemoryError as err:
            rows.append(dict(part=name, skipped=f'out of memory: {str(err).splitlines()[0][:200]}'))
            torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)

    if args.step_widths:
        big = args.step_widths == '1.5b'
        batch = args.batch or (4 if big else 16)
        text_len = args.text_len or (1024 if big else 64)
        for freeze in (True, False):
            attempt(f'llava step {args.step_widths}', llava_step, args.step_widths, args.device, batch,
                    text_len,
                    args.steps, args.warmup, freeze, not args.no_grad_ckpt)
    if args.stage3_config:
        attempt('config step', config_step, args.stage3_config, cfg_options, args.steps, args.warmup)
        if args.stage3_checkpoint and args.tasks_dir:
            attempt('own eval', own_eval_speed, args.stage3_config, args.stage3_checkpoint, args.tasks_dir,
                    args.questions, cfg_options)
    if args.export and args.tasks_dir:
        if osp.exists(args.lmms_python):
            attempt('lmms-eval', lmms_eval_speed, args.export, args.tasks_dir, args.questions,
                    args.lmms_python,
                    args.work_dir)
        else:
            rows.append(dict(part='lmms-eval', skipped=f'no lmms-eval env at {args.lmms_python}'))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
