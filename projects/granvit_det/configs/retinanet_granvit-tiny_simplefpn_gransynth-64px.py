# Tiny transfer benchmark of the toy chain: RetinaNet on the tiny GranViT (patch 8, 64 px) + SimpleFPN,
# GranSynth object boxes with the shape as class, CPU-safe (plain OptimWrapper, fp32).
#   python tools/misc/make_gran_synth_coco.py --data-root data/gran_synth
#   MMDET_TOOLS=$(python -c \
#       "import mmdet, os; print(os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'tools'))")
#   python $MMDET_TOOLS/train.py \
#       projects/granvit_det/configs/retinanet_granvit-tiny_simplefpn_gransynth-64px.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/granvit_pretrain_tiny/iter_1000.pth
# The backbone loads the stage-1 student (prefix 'backbone.'; 'teacher.module.' for the EMA teacher); set
# model.backbone.init_cfg=None for random init. A checkpoint that does not fit stops the run with what to set.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]
data_root = 'data/gran_synth/'
classes = ('circle', 'square', 'triangle', 'diamond', 'cross')  # granvit_mm.toy.gran_synth.SHAPES
image_size = (64, 64)
pretrained = 'work_dirs/granvit_pretrain_tiny/iter_1000.pth'

model = dict(
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='granvit.GranViT',
        arch='tiny',
        img_size=64,
        patch_size=8,
        out_type='featmap',
        out_indices=(-1, ),
        final_norm=False,  # the visual tokens (granvit_mm/core/visual_tokens.py): last block, no final norm
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='granvit.SimpleFPN',
        in_channels=64,
        out_channels=64,
        scale_factors=(1.0, 0.5),  # a stride-8 map -> strides 8, 16; stride 32 by subsampling (num_outs)
        num_outs=3),
    bbox_head=dict(
        num_classes=len(classes),
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32])),  # objects are 14-29 px at 64 px
    test_cfg=dict(score_thr=0.05, max_per_img=20))

metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/train_coco_shape.json', data_prefix=dict(img='images/'),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/val_coco_shape.json', data_prefix=dict(img='images/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/val_coco_shape.json', metric='bbox')
test_evaluator = val_evaluator

max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min_ratio=0.05),
]
optim_wrapper = dict(
    type='OptimWrapper',  # AmpOptimWrapper asserts an accelerator
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]
