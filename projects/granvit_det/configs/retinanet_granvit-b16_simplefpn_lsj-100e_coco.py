# RetinaNet on GranViT-B/16 + SimpleFPN (strides 8-128), ViTDet-style LSJ 1024 px, COCO boxes.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-detection.py',
]

image_size = (1024, 1024)
pretrained = 'checkpoints/granvit-b16.pth'
batch_augments = [dict(type='BatchFixedSizePad', size=image_size)]

model = dict(
    data_preprocessor=dict(
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        batch_augments=batch_augments),
    backbone=dict(
        _delete_=True,
        type='granvit.GranViT',
        arch='b',
        img_size=1024,
        patch_size=16,
        out_type='featmap',
        out_indices=(-1, ),
        drop_path_rate=0.1,
        window_size=16,
        global_attn_indexes=(2, 5, 8, 11),
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='granvit.SimpleFPN',
        in_channels=768,
        out_channels=256,
        scale_factors=(2.0, 1.0, 0.5),  # strides 8, 16, 32; P6/P7 (64, 128) by stride-2 subsampling
        num_outs=5))

backend_args = None
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=8, sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

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
