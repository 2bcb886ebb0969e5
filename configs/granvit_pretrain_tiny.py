# GranViT stage 1, tiny: trains on 2 CPU cores in about 4-8 minutes and shows learning
# (val Bbox2Caption ROUGE-L against the blind baseline, docs/pretraining.md).
# `make demo` makes its three assets and runs it; by hand:
#   python tools/misc/make_gran_synth.py --out-dir data/gran_synth
#   python tools/misc/make_tiny_siglip.py --data-root data/gran_synth --out-dir data/tiny_siglip
#   python tools/misc/make_tiny_llm.py --data-root data/gran_synth --out-dir data/tiny_llm \
#       --vision-warmup-steps 300 --vision-init data/tiny_siglip/granvit_tiny_siglip.pth
#   OMP_NUM_THREADS=2 python tools/train.py configs/granvit_pretrain_tiny.py
_base_ = [
    './_base_/models/granvit_pretrainer_tiny.py',
    './_base_/datasets/gran_synth_tiny.py',
    './_base_/schedules/granvit_tiny_iter.py',
    './_base_/default_runtime.py',
]

# Like the paper's SigLIP2 start: a tiny SigLIP trained on GranSynth's global captions, converted by
# siglip2_to_granvit.py (model.backbone.init_cfg=None starts from random weights instead)
vit_checkpoint = 'data/tiny_siglip/granvit_tiny_siglip.pth'
llm_path = 'data/tiny_llm'
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=vit_checkpoint)),
    head=dict(llm_path=llm_path))

custom_hooks = [
    dict(type='granvit.WeightsOnlyCheckpointHook'),
    # (ours, tiny) distillation starts once the caption loss has shaped the from-scratch features; from
    # iteration 0 its gradient swamps the caption loss's (see docs/pretraining.md)
    dict(type='granvit.DistillScheduleHook', start_iter=400, warmup_iters=100),
    # what the val number means: the same run with the image zeroed (configs/granvit_pretrain_tiny_blind.py,
    # measured with the `make demo` LLM; docs/pretraining.md)
    dict(type='granvit.BaselineReportHook', metric='bbox2caption/rouge_l', baseline=34.67,
         meaning='the image-blind baseline (same frozen LLM, image zeroed)'),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=250, max_keep_ckpts=2, save_best='bbox2caption/rouge_l', rule='greater'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
