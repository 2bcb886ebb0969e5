# Paper (docs/method.md): AdamW, lr 1e-5, total batch 256, one epoch. Warm-up + cosine, weight decay and grad
# clipping are ours (the paper is silent). bf16 autocast needs a GPU; on CPU use OptimWrapper.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'pos_embed': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# lr is for a total batch of 256 (e.g. 8 GPUs x 32); `--auto-scale-lr` rescales it for other totals.
auto_scale_lr = dict(base_batch_size=256, enable=False)
