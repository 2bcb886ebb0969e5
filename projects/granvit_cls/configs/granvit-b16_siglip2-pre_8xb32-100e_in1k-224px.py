# ImageNet-1k fine-tuning of GranViT-B/16 with mmpretrain (global-average-pooled patch tokens, no CLS token).
# Backbone weights: tools/model_converters/siglip2_to_granvit.py (SigLIP2 B/16) or a GranViT stage-1 ckpt.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
pretrained = 'checkpoints/granvit-b16.pth'

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True),
    backbone=dict(
        type='granvit.GranViT',
        arch='b',
        img_size=224,
        patch_size=16,
        out_type='avg_featmap',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]))

train_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(lr=5e-4 * 256 / 512, weight_decay=0.05),
    # mmpretrain's own layer-decay constructor: an ImageClassifier delegates get_layer_depth to its backbone
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65, norm_decay_mult=0.0, bias_decay_mult=0.0,
        custom_keys={'.pos_embed': dict(decay_mult=0.0)}))
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]
