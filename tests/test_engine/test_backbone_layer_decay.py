import pytest
import torch
from mmengine.optim import build_optim_wrapper

from granvit_mm.models.backbones import GranViT


class _Detector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = GranViT(arch='tiny', img_size=32, patch_size=8)
        self.neck = torch.nn.Linear(64, 8)


def _lr_by_name(optim_wrapper):
    return {g['param_name']: g['lr'] for g in optim_wrapper.optimizer.param_groups}


def test_backbone_depth_sets_the_lr_and_heads_keep_it():
    model = _Detector()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1),
        constructor='granvit.BackboneLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.5, norm_decay_mult=0.)))
    lrs = _lr_by_name(wrapper)
    depths = model.backbone.num_layers + 2  # embeddings, blocks, then the rest
    assert lrs['backbone.pos_embed'] == pytest.approx(1e-3 * 0.5 ** (depths - 1))
    assert lrs['backbone.patch_embed.weight'] == pytest.approx(1e-3 * 0.5 ** (depths - 1))
    assert lrs['backbone.layers.0.attn.qkv.weight'] == pytest.approx(1e-3 * 0.5 ** (depths - 2))
    last = model.backbone.num_layers - 1
    assert lrs[f'backbone.layers.{last}.mlp.fc1.weight'] == pytest.approx(1e-3 * 0.5)
    assert lrs['neck.weight'] == pytest.approx(1e-3)
    assert len(lrs) == sum(1 for p in model.parameters() if p.requires_grad)


def test_a_model_without_a_vit_backbone_is_refused():
    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(
            type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
            constructor='granvit.BackboneLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.5)))
