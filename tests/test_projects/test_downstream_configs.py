"""The projects/ mmdet and mmseg configs load, build with GranViT + SimpleFPN, train a step and predict.

Each config is shrunk the same way (tiny GranViT, 64 px, narrow heads, few classes and RoIs) so the whole file
stays CPU-fast; what is checked is that the real config's structure wires together and runs end to end.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = osp.join(ROOT, 'projects', 'granvit_det', 'configs')
SEG = osp.join(ROOT, 'projects', 'granvit_seg', 'configs')
MASK_RCNN = 'mask-rcnn_granvit-b16_simplefpn_lsj-100e_coco.py'
RETINANET = 'retinanet_granvit-b16_simplefpn_lsj-100e_coco.py'
UPERNET = 'upernet_granvit-b16_simplefpn_8xb2-160k_ade20k-512x512.py'
SIZE = 64
NARROW = {256: 32, 512: 32, 1024: 64}
CHANNEL_KEYS = {
    'out_channels', 'in_channels', 'feat_channels', 'conv_out_channels', 'fc_out_channels', 'channels'}


def shrink(node):
    """Narrow every 256/512/1024-channel setting, 3 classes, BN instead of SyncBN, recursively."""
    if isinstance(node, (list, tuple)):
        return type(node)(shrink(v) for v in node)
    if not isinstance(node, dict):
        return node
    out = ConfigDict()
    for key, value in node.items():
        if key in CHANNEL_KEYS and isinstance(value, int) and value in NARROW:
            value = NARROW[value]
        elif key in CHANNEL_KEYS and isinstance(value, list):
            value = [NARROW.get(v, v) for v in value]
        elif key == 'num_classes':
            value = 3
        elif key == 'type' and value == 'SyncBN':
            value = 'BN'
        out[key] = shrink(value)
    return out


def tiny_model_cfg(cfg):
    model = shrink(cfg.model)
    model.backbone.update(arch='tiny', img_size=SIZE, init_cfg=None)
    if model.backbone.get('window_size'):
        model.backbone.update(window_size=2, global_attn_indexes=(1, 3))
    model.neck.in_channels = 64
    return model


def check_granvit_wiring(cfg):
    assert 'custom_imports' not in cfg  # the granvit scope fills itself on first use
    assert cfg.model.backbone.type == 'granvit.GranViT'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.neck.type == 'granvit.SimpleFPN'
    assert cfg.model.data_preprocessor.mean == [127.5] * 3 and cfg.model.data_preprocessor.std == [127.5] * 3
    assert cfg.optim_wrapper.constructor == 'granvit.BackboneLayerDecayOptimWrapperConstructor'
    assert dict(type='granvit.WeightsOnlyCheckpointHook') in cfg.custom_hooks


def train_step_and_predict(model, packed):
    torch.manual_seed(0)
    model.train()
    data = model.data_preprocessor(packed, True)
    loss, log_vars = model.parse_losses(model.forward(**data, mode='loss'))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    qkv = model.backbone.layers[0].attn.qkv.weight.grad
    assert qkv is not None and qkv.abs().sum() > 0  # the loss reaches the first ViT block
    model.eval()
    with torch.no_grad():
        return log_vars, model.forward(**model.data_preprocessor(packed, False), mode='predict')


@pytest.mark.parametrize('name, with_mask', [(MASK_RCNN, True), (RETINANET, False)])
def test_mmdet_config(name, with_mask):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(osp.join(DET, name))
    check_granvit_wiring(cfg)
    init_default_scope('mmdet')
    model_cfg = tiny_model_cfg(cfg)
    model_cfg.data_preprocessor.batch_augments[0].size = (SIZE, SIZE)
    if with_mask:  # few RoIs: the point is the wiring, not the sampler
        model_cfg.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
        model_cfg.train_cfg.rcnn.sampler.num = 32
        model_cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=32)
    model = MODELS.build(model_cfg)
    assert type(model.backbone).__name__ == 'GranViT' and type(model.neck).__name__ == 'SimpleFPN'
    packed = demo_mm_inputs(2, [(3, SIZE, SIZE), (3, 48, 56)], num_classes=3, with_mask=with_mask)
    log_vars, preds = train_step_and_predict(model, packed)
    assert ('loss_mask' in log_vars) == with_mask and 'loss_bbox' in log_vars
    assert len(preds) == 2
    inst = preds[1].pred_instances
    assert inst.bboxes.ndim == 2 and inst.bboxes.shape[1] == 4
    if with_mask:
        assert inst.masks.shape[1:] == (48, 56)  # masks pasted at the original image size


def test_mask_rcnn_full_size_backbone_and_neck_build():
    """The unshrunk B/16 backbone + neck of the config build and agree on channels and pyramid strides."""
    from mmdet.registry import MODELS
    cfg = Config.fromfile(osp.join(DET, MASK_RCNN))
    init_default_scope('mmdet')
    backbone_cfg = dict(cfg.model.backbone, init_cfg=None)
    backbone = MODELS.build(backbone_cfg)
    assert backbone.patch_resolution == (64, 64) and backbone.embed_dims == cfg.model.neck.in_channels
    assert [layer.window_size for layer in backbone.layers] == [16, 16, 0] * 4
    neck = MODELS.build(cfg.model.neck)
    with torch.no_grad():
        outs = neck([torch.zeros(1, 768, 4, 4)])
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]  # strides 4..64 for a stride-16 map
    assert cfg.model.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]


def test_mmseg_config():
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    cfg = Config.fromfile(osp.join(SEG, UPERNET))
    check_granvit_wiring(cfg)
    assert cfg.model.pretrained is None
    init_default_scope('mmseg')
    model_cfg = tiny_model_cfg(cfg)
    model_cfg.data_preprocessor.size = (SIZE, SIZE)
    model_cfg.test_cfg = dict(mode='whole')
    model = MODELS.build(model_cfg)
    torch.manual_seed(0)
    samples = []
    for _ in range(2):
        shape = (SIZE, SIZE)
        sample = SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, SIZE, SIZE)))
        samples.append(sample)
    packed = dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8) for _ in range(2)],
                  data_samples=samples)
    log_vars, preds = train_step_and_predict(model, packed)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(log_vars)
    assert preds[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)
    assert preds[0].seg_logits.data.shape == (3, SIZE, SIZE)


def test_mmpretrain_config():
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(osp.join(ROOT, 'projects', 'granvit_cls', 'configs',
                                   'granvit-b16_siglip2-pre_8xb32-100e_in1k-224px.py'))
    assert cfg.model.backbone.type == 'granvit.GranViT' and cfg.model.backbone.init_cfg.type == 'Pretrained'
    init_default_scope('mmpretrain')
    model_cfg = ConfigDict(cfg.model)
    model_cfg.backbone.update(arch='tiny', img_size=SIZE, init_cfg=None)
    model_cfg.head.update(num_classes=3, in_channels=64)
    model = MODELS.build(model_cfg)
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    packed = dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8) for _ in range(2)],
                  data_samples=samples)
    log_vars, preds = train_step_and_predict(model, packed)
    assert 'loss' in log_vars and preds[0].pred_score.shape == (3, )
    # The config's layer decay reaches the GranViT blocks through ImageClassifier.get_layer_depth.
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    lr = {g['param_name']: g['lr'] for g in groups}
    assert (lr['backbone.layers.0.attn.qkv.weight'] < lr['backbone.layers.3.attn.qkv.weight']
            < lr['head.fc.weight'])
