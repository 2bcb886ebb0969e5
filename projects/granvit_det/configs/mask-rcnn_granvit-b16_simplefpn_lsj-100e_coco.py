# Mask R-CNN on GranViT-B/16 + SimpleFPN, ViTDet's recipe (LSJ 1024 px, ~100 epochs at batch 64), COCO.
# Backbone weights: tools/model_converters/siglip2_to_granvit.py (SigLIP2 B/16) or a GranViT stage-1 ckpt.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]

image_size = (1024, 1024)
pretrained = 'checkpoints/granvit-b16.pth'
norm_cfg = dict(type='granvit.LN2d', requires_grad=True)  # ViTDet's LayerNorm in neck and heads
batch_augments = [dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]

model = dict(
    data_preprocessor=dict(
        # SigLIP normalisation: (x - 127.5) / 127.5, RGB
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        batch_augments=batch_augments),
    backbone=dict(
        _delete_=True,
        type='granvit.GranViT',
        arch='b',
        img_size=1024,  # the 224/512 px position table is resized once, on load
        patch_size=16,
        out_type='featmap',
        out_indices=(-1, ),
        drop_path_rate=0.1,
        window_size=16,  # ViTDet: windowed blocks, 4 global ones
        global_attn_indexes=(2, 5, 8, 11),
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='granvit.SimpleFPN',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),  # strides 4, 8, 16, 32 (+ 64 by subsampling)
        num_outs=5),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

backend_args = None
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=8, sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# ViTDet schedule: 184375 iterations at batch 64 (16 GPUs x 4), steps at 88.9% and 96.3%
max_iters = 184375
interval = 5000
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[163889, 177546], gamma=0.1),
]
# Layer-wise lr decay over the backbone's blocks (ViTDet / BEiT recipes); neck and heads keep the full lr.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='granvit.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0., bias_decay_mult=0., custom_keys={'pos_embed': dict(decay_mult=0.)}))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=interval, max_keep_ckpts=5))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=64)
# Checkpoints that torch >= 2.6 loads with weights_only=True (resume keeps safe loading on).
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]
