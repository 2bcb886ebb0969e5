# Runtime shared by GranViT configs.
# The granvit scope fills its registries itself on first use (granvit_mm/registry.py `locations`): no imports.
default_scope = 'granvit'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# Checkpoints that torch's safe loader (weights_only=True, default since torch 2.6) accepts, so --resume works
# without turning safe loading off.
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=False, window_size=10)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
