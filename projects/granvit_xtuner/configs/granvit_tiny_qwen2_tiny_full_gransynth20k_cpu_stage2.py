# GranViT stage 2, tiny, the grounding run: the tiny stage-2 config on 20,000 GranSynth training images for
# 16,000 iterations with 0-999 integer boxes. Stage 2 from the `make demo` GranViT then finds the named
# object (Caption2Bbox Acc@0.5 in docs/toy_grounding.md); the 2,000-image, 1,000-iteration
# `make stage2-demo` shows the wiring in minutes. `make stage2-grounding` runs it (about 40 minutes on 2
# cores); by hand, after `make demo`:
#   python tools/misc/make_gran_synth.py --out-dir data/gran_synth_20k --num-train 20000
#   python tools/model_converters/granvit_to_hf.py work_dirs/granvit_pretrain_tiny/iter_1000.pth \
#       work_dirs/granvit_pretrain_tiny/hf_encoder
#   OMP_NUM_THREADS=2 python -m xtuner.tools.train \
#       projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth20k_cpu_stage2.py
#   python tools/analysis_tools/eval_stage2.py \
#       projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth20k_cpu_stage2.py \
#       work_dirs/granvit_tiny_qwen2_tiny_full_gransynth20k_cpu_stage2/iter_16000.pth
from mmengine.config import read_base

with read_base():
    from .granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2 import *  # noqa: F401,F403

# Data: the val file is the one of data/gran_synth (same generator, same seed), so scores compare
data_root = 'data/gran_synth_20k/'
box_style = 'int999'  # 3 tokens a coordinate instead of 5 (docs/toy_grounding.md, row 8)
train_dataset.update(data_root=data_root, box_style=box_style)  # noqa: F405
# one loader process overlaps image loading with the step: 0.13-0.16 s an iteration on 2 cores against 0.185
train_dataloader.update(dataset=train_dataset, num_workers=1, persistent_workers=True)  # noqa: F405

# Schedule: 16x the tiny config's iterations; the rest (batch 16, lr 1e-3 with its warm-up and cosine, AdamW,
# clipping) is the tiny config's
max_iters = 16000
save_steps = 2000
param_scheduler[-1].update(end=max_iters)  # noqa: F405
train_cfg.update(max_iters=max_iters)  # noqa: F405
default_hooks.checkpoint.update(interval=save_steps)  # noqa: F405
