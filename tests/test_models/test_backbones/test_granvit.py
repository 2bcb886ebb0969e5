"""GranViT backbone: the mmpretrain-style contract, numerics of its options, registry building."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from granvit_mm.core.siglip_keys import resize_pos_embed
from granvit_mm.models.backbones import GranViT
from granvit_mm.models.backbones import granvit as granvit_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def tiny(**kwargs):
    """4 blocks, 64 dims, 4x4 grid of 8-pixel patches: milliseconds on CPU."""
    torch.manual_seed(0)
    kwargs.setdefault('img_size', 32)
    kwargs.setdefault('patch_size', 8)
    return GranViT(arch='tiny', **kwargs).eval()


def manual_tokens(model, x, upto):
    """Reference forward written out: tokens after block ``upto`` (inclusive), before the final norm."""
    t = model.patch_embed(x).flatten(2).transpose(1, 2) + model.pos_embed
    for layer in model.layers[:upto + 1]:
        t = layer(t, model.patch_resolution)
    return t


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 32)


def test_arch_zoo_matches_siglip2_sizes():
    expect = {'b': (768, 12, 12, 3072), 'l': (1024, 24, 16, 4096), 'so400m': (1152, 27, 16, 4304)}
    for name, (dims, layers, heads, ffn) in expect.items():
        assert GranViT.arch_zoo[name] == dict(
            embed_dims=dims, num_layers=layers, num_heads=heads, feedforward_channels=ffn)
    custom = GranViT(arch=dict(embed_dims=36, num_layers=2, num_heads=3, feedforward_channels=80),
                     img_size=14, patch_size=7)
    assert custom.layers[0].attn.qkv.weight.shape == (108, 36)
    assert custom.layers[1].mlp.fc1.weight.shape == (80, 36)
    assert len(custom.layers) == 2
    with pytest.raises(KeyError):
        GranViT(arch='huge')
    with pytest.raises(KeyError):
        GranViT(arch=dict(embed_dims=32, num_layers=1, num_heads=2))
    with pytest.raises(ValueError):
        GranViT(arch='tiny', out_type='cls_token')


def test_parameter_count_of_siglip2_base():
    """Same parameter count as HF's B/16 vision tower without its pooling head (92.88M at 224 px)."""
    model = GranViT(arch='b', img_size=224, patch_size=16)
    n = sum(p.numel() for p in model.parameters())
    per_block = 4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    assert n == 768 * 3 * 256 + 768 + 196 * 768 + 12 * per_block + 2 * 768


def test_out_types(images):
    raw = tiny(out_type='raw')(images)
    assert len(raw) == 1 and raw[0].shape == (2, 16, 64)
    fmap = tiny(out_type='featmap')(images)[0]
    assert fmap.shape == (2, 64, 4, 4)
    # featmap is the token sequence laid out row-major on the patch grid
    torch.testing.assert_close(fmap[:, :, 1, 2], raw[0][:, 1 * 4 + 2])
    avg = tiny(out_type='avg_featmap')(images)[0]
    assert avg.shape == (2, 64)
    torch.testing.assert_close(avg, raw[0].mean(1))


def test_out_indices_and_final_norm(images):
    model = tiny(out_type='raw', out_indices=(1, -1, -3))
    assert model.out_indices == (1, 3, 1)
    with torch.no_grad():
        outs = model(images)
        mid = manual_tokens(model, images, 1)
        last = manual_tokens(model, images, 3)
    assert len(outs) == 3
    torch.testing.assert_close(outs[0], mid)  # intermediate blocks are not normed
    torch.testing.assert_close(outs[2], mid)
    torch.testing.assert_close(outs[1], F.layer_norm(last, (64, ), model.norm.weight, model.norm.bias, 1e-6))
    # with default init the final LayerNorm is the identity affine: per-token zero mean, unit variance
    assert outs[1].mean(-1).abs().max() < 1e-5
    assert (outs[1].var(-1, unbiased=False) - 1).abs().max() < 1e-3
    no_norm = tiny(out_type='raw', final_norm=False)
    with torch.no_grad():
        torch.testing.assert_close(no_norm(images)[0], manual_tokens(no_norm, images, 3))
    with pytest.raises(IndexError):
        tiny(out_indices=4)
    with pytest.raises(IndexError):
        tiny(out_indices=-5)


def test_blocks_after_last_out_index_do_not_run(images, monkeypatch):
    model = tiny(out_indices=1)
    calls = []
    for i, layer in enumerate(model.layers):
        layer.register_forward_hook(lambda *a, i=i: calls.append(i))
    model(images)
    assert calls == [0, 1]


def test_frozen_stages(images):
    model = tiny(frozen_stages=2).train()
    assert not model.pos_embed.requires_grad
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    for i, layer in enumerate(model.layers):
        assert all(p.requires_grad == (i >= 2) for p in layer.parameters())
        assert layer.training == (i >= 2)
    assert all(p.requires_grad for p in model.norm.parameters())
    model.train()  # a second train() must keep the frozen part in eval mode
    assert not model.layers[1].training and model.layers[2].training
    model(images)[0].sum().backward()
    assert model.layers[1].attn.qkv.weight.grad is None
    assert model.layers[2].attn.qkv.weight.grad.abs().sum() > 0

    all_frozen = tiny(frozen_stages=4).train()
    assert not any(p.requires_grad for p in all_frozen.parameters())
    assert not all_frozen.norm.training
    nothing = tiny(frozen_stages=-1).train()
    assert all(p.requires_grad for p in nothing.parameters())
    embeddings_only = tiny(frozen_stages=0).train()
    assert not embeddings_only.pos_embed.requires_grad
    assert all(p.requires_grad for p in embeddings_only.layers.parameters())


def test_get_layer_depth_matches_mmpretrain_vit():
    from mmpretrain.models import VisionTransformer
    ours = tiny()
    ref = VisionTransformer(arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256),
                            img_size=32, patch_size=8)
    pairs = [('backbone.pos_embed', 'backbone.pos_embed'),
             ('backbone.patch_embed.weight', 'backbone.patch_embed.projection.weight'),
             ('backbone.layers.0.ln1.weight', 'backbone.layers.0.ln1.weight'),
             ('backbone.layers.2.attn.qkv.weight', 'backbone.layers.2.attn.qkv.weight'),
             ('backbone.layers.3.mlp.fc2.bias', 'backbone.layers.3.ffn.layers.1.bias'),
             ('backbone.norm.weight', 'backbone.ln1.weight'),
             ('neck.conv.weight', 'neck.conv.weight')]
    expected = [0, 0, 1, 3, 4, 5, 5]
    for (name, ref_name), depth in zip(pairs, expected):
        assert ours.get_layer_depth(name, 'backbone.') == (depth, 6)
        assert ref.get_layer_depth(ref_name, 'backbone.') == (depth, 6)


def test_layer_decay_constructor_uses_get_layer_depth():
    """mmpretrain's layer-decay constructor reads our depths: lr = decay ** (num_depths - 1 - depth)."""
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

    class Wrapper(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = tiny()

        def get_layer_depth(self, name):  # what mmpretrain's ImageClassifier does
            return self.backbone.get_layer_depth(name, 'backbone.')

    model = Wrapper()
    constructor = LearningRateDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        dict(layer_decay_rate=0.5))
    groups = constructor(model).optimizer.param_groups
    lr = {id(p): g['lr'] for g in groups for p in g['params']}
    bb = model.backbone
    assert lr[id(bb.pos_embed)] == pytest.approx(0.5**5)
    assert lr[id(bb.patch_embed.weight)] == pytest.approx(0.5**5)
    assert lr[id(bb.layers[0].attn.qkv.weight)] == pytest.approx(0.5**4)
    assert lr[id(bb.layers[3].mlp.fc1.weight)] == pytest.approx(0.5**1)
    assert lr[id(bb.norm.weight)] == pytest.approx(1.0)


def test_with_cp_same_output_and_grads(images, monkeypatch):
    calls = []
    real = granvit_module.checkpoint

    def counting(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return real(*args, **kwargs)

    monkeypatch.setattr(granvit_module, 'checkpoint', counting)
    plain, cp = tiny().train(), tiny(with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x1, x2 = images.clone().requires_grad_(), images.clone().requires_grad_()
    out1, out2 = plain(x1)[0], cp(x2)[0]
    torch.testing.assert_close(out1, out2)
    (out1 * torch.arange(out1.numel()).view_as(out1)).sum().backward()
    (out2 * torch.arange(out2.numel()).view_as(out2)).sum().backward()
    assert calls == [False] * 4
    torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p1), p2 in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)
    calls.clear()
    with torch.no_grad():
        cp(images)
    cp.eval()(images)
    assert calls == []  # no checkpointing without a graph or at eval


@pytest.mark.parametrize('hw, grid', [((40, 56), (5, 7)), ((43, 60), (5, 7)), ((16, 16), (2, 2))])
def test_any_input_size(hw, grid):
    model = tiny()
    out = model(torch.randn(1, 3, *hw))[0]
    assert out.shape == (1, 64, *grid)
    assert model.grid_size(hw) == grid


def test_on_the_fly_resize_equals_model_built_for_that_size(tmp_path):
    """A 4x4-grid model fed 48x40 px equals a 6x5-grid model that loaded the 4x4 weights (resize on load)."""
    native = tiny(out_type='raw')
    big = GranViT(arch='tiny', img_size=(48, 40), patch_size=8, out_type='raw').eval()
    big.load_state_dict(native.state_dict())
    expect = F.interpolate(native.pos_embed.detach().reshape(1, 4, 4, 64).permute(0, 3, 1, 2), size=(6, 5),
                           mode='bicubic', align_corners=False).permute(0, 2, 3, 1).reshape(1, 30, 64)
    torch.testing.assert_close(big.pos_embed.detach(), expect)
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(native(x)[0], big(x)[0])
    # gradients reach the native table through the on-the-fly resize
    native.train()
    native(x)[0].sum().backward()
    assert native.pos_embed.grad.abs().sum() > 0


def test_antialias_interpolation_option():
    """SigLIP2 NaFlex's table resize (bilinear + antialias) is honoured, and differs from SigLIP's bicubic."""
    model = tiny(interpolate_mode='bilinear', interpolate_antialias=True)
    grid = model.pos_embed.detach().reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(3, 2), mode='bilinear', align_corners=False, antialias=True)
    got = model.pos_embed_for((3, 2)).detach()
    torch.testing.assert_close(got, ref.permute(0, 2, 3, 1).reshape(1, 6, 64))
    bicubic = tiny().pos_embed_for((3, 2)).detach()
    assert (got - bicubic).abs().max() > 1e-3


def test_resize_pos_embed_identity_and_shape():
    pe = torch.randn(1, 9, 5)
    assert resize_pos_embed(pe, (3, 3), (3, 3)) is pe
    assert resize_pos_embed(pe, (3, 3), (4, 2)).shape == (1, 8, 5)
    assert resize_pos_embed(pe.bfloat16(), (3, 3), (4, 2)).dtype == torch.bfloat16


def test_init_cfg_pretrained_loads_everything(tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint
    src = tiny()
    path = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=src.state_dict(), meta=dict(note='test')), path)
    model = GranViT(arch='tiny', img_size=32, patch_size=8, init_cfg=dict(type='Pretrained', checkpoint=path))
    assert not torch.equal(model.pos_embed, src.pos_embed)
    model.init_weights()
    for (name, a), b in zip(model.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), name
    # strict loading: no missing or unexpected keys; another grid gets a resized table
    other = GranViT(arch='tiny', img_size=24, patch_size=8)
    load_checkpoint(other, path, strict=True)
    expect = resize_pos_embed(src.pos_embed.detach(), (4, 4), (3, 3))
    torch.testing.assert_close(other.pos_embed.detach(), expect)


def test_window_attention():
    arch = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)
    torch.manual_seed(0)
    glob = GranViT(arch=arch, img_size=32, patch_size=8, out_type='featmap').eval()
    whole = GranViT(arch=arch, img_size=32, patch_size=8, out_type='featmap', window_size=4).eval()
    win = GranViT(arch=arch, img_size=32, patch_size=8, out_type='featmap', window_size=2).eval()
    for m in (whole, win):
        m.load_state_dict(glob.state_dict())
    x = torch.randn(1, 3, 32, 32)
    x2 = x.clone()
    x2[..., :8, :8] += 1  # change patch (0, 0) only
    with torch.no_grad():
        torch.testing.assert_close(whole(x)[0], glob(x)[0])  # one window covering the grid = global
        a, b = win(x)[0], win(x2)[0]
        g1, g2 = glob(x)[0], glob(x2)[0]
    changed = (a - b).abs().amax(1)[0] > 1e-6
    assert changed[:2, :2].all() and not changed[2:].any() and not changed[:, 2:].any()
    assert ((g1 - g2).abs().amax(1)[0] > 1e-6).all()  # global attention spreads it everywhere
    padded = GranViT(arch=arch, img_size=40, patch_size=8, window_size=2, global_attn_indexes=(-1, ))
    assert padded.layers[0].window_size == 0
    assert padded(torch.randn(1, 3, 40, 40))[0].shape == (1, 32, 5, 5)
    odd = GranViT(arch=dict(arch, num_layers=2), img_size=40, patch_size=8, window_size=2,
                  global_attn_indexes=(1, ))
    assert [layer.window_size for layer in odd.layers] == [2, 0]
    assert odd(torch.randn(1, 3, 40, 40))[0].shape == (1, 32, 5, 5)


def test_drop_path_only_in_training(images):
    model = tiny(drop_path_rate=0.5)
    assert [round(layer.drop_path_rate, 3) for layer in model.layers] == [0.0, 0.167, 0.333, 0.5]
    with torch.no_grad():
        torch.testing.assert_close(model(images)[0], model(images)[0])
        model.train()
        torch.manual_seed(3)
        a = model(images)[0]
        torch.manual_seed(4)
        b = model(images)[0]
    assert (a - b).abs().max() > 1e-3


def test_scoped_build_from_mmpretrain_and_mmdet_registries():
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    from granvit_mm.registry import MODELS
    cases = ((MODELS, 'GranViT'), (MODELS, 'granvit.GranViT'), (PRETRAIN_MODELS, 'granvit.GranViT'),
             (DET_MODELS, 'granvit.GranViT'))
    for registry, key in cases:
        model = registry.build(dict(type=key, arch='tiny', img_size=16, patch_size=8))
        assert type(model) is GranViT and model.embed_dims == 64
    neck = DET_MODELS.build(dict(type='granvit.SimpleFPN', in_channels=64, out_channels=16))
    assert len(neck.rescales) == 4


def test_scoped_build_in_fresh_process_without_any_granvit_import():
    """mmdet's tools build ``type='granvit.GranViT'`` in a process that never imported us: mmengine imports
    ``granvit.registry`` (the alias package) and the registry's ``locations`` import the models."""
    code = ('import sys\n'
            'from mmengine.registry import init_default_scope\n'
            'from mmdet.registry import MODELS\n'
            "init_default_scope('mmdet')\n"
            "assert 'granvit_mm' not in sys.modules\n"
            "m = MODELS.build(dict(type='granvit.GranViT', arch='tiny', img_size=16, patch_size=8))\n"
            "n = MODELS.build(dict(type='granvit.SimpleFPN', in_channels=64, out_channels=8))\n"
            'print(type(m).__module__, type(n).__name__)\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd='/', env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('granvit_mm.models.backbones.granvit SimpleFPN')


def test_deepcopy_keeps_load_time_resize():
    """An EMA teacher is a deepcopy: its load hook must act on the copy, not on the original."""
    import copy
    student = tiny()
    teacher = copy.deepcopy(student)
    other = GranViT(arch='tiny', img_size=24, patch_size=8)
    teacher.load_state_dict(other.state_dict())
    expect = resize_pos_embed(other.pos_embed.detach(), (3, 3), (4, 4))
    torch.testing.assert_close(teacher.pos_embed.detach(), expect)
    assert not torch.equal(student.pos_embed, teacher.pos_embed)
