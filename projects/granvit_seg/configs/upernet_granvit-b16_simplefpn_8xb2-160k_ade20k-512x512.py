# UperNet on GranViT-B/16 + SimpleFPN (strides 4-32 from the last block), ADE20K 512x512, 160k iterations.
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

crop_size = (512, 512)
pretrained = 'checkpoints/granvit-b16.pth'
model = dict(
    pretrained=None,
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], size=crop_size),
    backbone=dict(
        _delete_=True,
        type='granvit.GranViT',
        arch='b',
        img_size=512,
        patch_size=16,
        out_type='featmap',
        out_indices=(-1, ),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='granvit.SimpleFPN',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5)),
    decode_head=dict(in_channels=[256, 256, 256, 256], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=256, in_index=2, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# Layer-wise lr decay over the backbone's blocks (ViTDet / BEiT recipes); neck and heads keep the full lr.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='granvit.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65, norm_decay_mult=0.,
                       custom_keys={'pos_embed': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# Checkpoints that torch >= 2.6 loads with weights_only=True (resume keeps safe loading on).
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]
