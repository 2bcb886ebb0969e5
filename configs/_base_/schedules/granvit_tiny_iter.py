# Tiny CPU schedule: lr 1e-3 for the projector, which starts from random; the paper's 1e-5 for the ViT
# (lr_mult 0.01 on the backbone and on its position table, whose key is longer and so matched first). At 1e-3
# the ViT is retrained rather than fine-tuned and self-distillation washes the named object's place out of the
# compared layer; at 1e-5 it keeps it and stage 2 grounds from it (docs/toy_grounding.md, rows 20-31).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'backbone': dict(lr_mult=0.01),
                                    'pos_embed': dict(lr_mult=0.01, decay_mult=0.0)}),
)
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.05, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=250)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(base_batch_size=16, enable=False)
