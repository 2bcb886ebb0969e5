"""HF SigLIP / SigLIP2 -> GranViT: the converter's key map reproduces HF's vision tower numerically."""
import os
import subprocess
import sys

import pytest
import torch

from granvit_mm.core.siglip_keys import (convert_siglip_vision, granvit_kwargs, linear_to_conv_patch_weight,
                                         resize_pos_embed, strip_vision_prefix)
from granvit_mm.models.backbones import GranViT

transformers = pytest.importorskip('transformers')
from repo_tools import load_tool as load_repo_tool  # noqa: E402
from transformers import SiglipConfig, SiglipModel, SiglipVisionConfig, SiglipVisionModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOOL = os.path.join(ROOT, 'tools', 'model_converters', 'siglip2_to_granvit.py')
TOL = 1e-4


def load_tool():
    return load_repo_tool('tools/model_converters/siglip2_to_granvit.py')


def scramble(model, seed=0):
    """Random LayerNorm affines and biases too, so a swapped ln1/ln2 or q/k/v mapping cannot pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.add_(noise * (0.2 if 'norm' in name else 0.05))
    return model.eval()


def hf_vision(hidden, heads, ffn, layers, image, patch, seed=0):
    torch.manual_seed(seed)
    config = SiglipVisionConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=ffn,
                                num_hidden_layers=layers, image_size=image, patch_size=patch)
    return scramble(SiglipVisionModel(config), seed)


def granvit_from(path, **kwargs):
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    kwargs = dict(ckpt['meta']['granvit_kwargs'], **kwargs)
    model = GranViT(**kwargs, out_type='raw', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    return model.eval(), ckpt


CASES = [
    # hidden, heads, ffn, layers, image, patch, safetensors
    (36, 3, 80, 2, 28, 7, True),
    (48, 4, 96, 3, 48, 16, False),
    (30, 5, 44, 2, 30, 6, True),
]


@pytest.mark.parametrize('hidden, heads, ffn, layers, image, patch, safe', CASES)
def test_converted_tower_matches_hf(tmp_path, hidden, heads, ffn, layers, image, patch, safe):
    hf = hf_vision(hidden, heads, ffn, layers, image, patch)
    hf.save_pretrained(tmp_path / 'hf', safe_serialization=safe)
    kwargs = load_tool().convert(str(tmp_path / 'hf'), str(tmp_path / 'granvit.pth'))
    assert kwargs['arch'] == dict(
        embed_dims=hidden, num_layers=layers, num_heads=heads, feedforward_channels=ffn)
    assert (kwargs['img_size'], kwargs['patch_size']) == (image, patch)
    model, ckpt = granvit_from(str(tmp_path / 'granvit.pth'))
    assert set(ckpt['state_dict']) == set(model.state_dict())  # no missing / unexpected keys
    assert not any(k.startswith('head') for k in ckpt['state_dict'])
    assert ckpt['meta']['dropped'] and all(k.startswith('head.') for k in ckpt['meta']['dropped'])
    x = torch.randn(2, 3, image, image)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
        ours = model(x)[0]
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= TOL
    assert ref.abs().mean() > 0.1  # a non-trivial signal was compared


def test_intermediate_layer_matches_hf_hidden_states(tmp_path):
    """out_indices=-2 (LLaVA's visual_select_layer) is HF's hidden_states[-2], un-normed."""
    hf = hf_vision(36, 3, 80, 3, 28, 7)
    kwargs = granvit_kwargs(hf.state_dict(), hf.config.to_dict())
    model = GranViT(**kwargs, out_type='raw', out_indices=(-2, -1))
    model.load_state_dict(convert_siglip_vision(hf.state_dict()))
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        out = hf(pixel_values=x, output_hidden_states=True)
        mid, last = model.eval()(x)
    assert (mid - out.hidden_states[-2]).abs().max() <= TOL
    assert (last - out.last_hidden_state).abs().max() <= TOL


def test_full_siglip_model_directory_keeps_vision_part(tmp_path):
    torch.manual_seed(0)
    config = SiglipConfig(
        text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=8),
        vision_config=dict(hidden_size=36, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
                           image_size=28, patch_size=7))
    full = scramble(SiglipModel(config))
    full.save_pretrained(tmp_path / 'hf')
    kwargs = load_tool().convert(str(tmp_path / 'hf'), str(tmp_path / 'granvit.pth'))
    assert kwargs['arch']['num_heads'] == 3
    model, ckpt = granvit_from(str(tmp_path / 'granvit.pth'))
    assert not any('text' in k for k in ckpt['state_dict'])
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        ref = full.vision_model(pixel_values=x).last_hidden_state
        assert (model(x)[0] - ref).abs().max() <= TOL


def test_cli(tmp_path):
    hf = hf_vision(36, 3, 80, 2, 28, 7)
    hf.save_pretrained(tmp_path / 'hf')
    dst = tmp_path / 'out' / 'granvit.pth'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run([sys.executable, TOOL, str(tmp_path / 'hf'), str(dst)], capture_output=True,
                         text=True, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    arch = "{'embed_dims': 36, 'num_layers': 2, 'num_heads': 3, 'feedforward_channels': 80}"
    assert f'arch={arch}' in res.stdout
    assert 'img_size=28' in res.stdout and 'patch_size=7' in res.stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    expect = convert_siglip_vision(hf.state_dict())
    assert set(ckpt['state_dict']) == set(expect)
    for k, v in expect.items():
        assert torch.equal(ckpt['state_dict'][k], v), k


def test_qkv_fusion_order():
    hf = hf_vision(36, 3, 80, 1, 14, 7)
    sd = convert_siglip_vision(hf.state_dict())
    attn = hf.vision_model.encoder.layers[0].self_attn
    q, k, v = sd['layers.0.attn.qkv.weight'].split(36)
    assert torch.equal(q, attn.q_proj.weight) and torch.equal(k, attn.k_proj.weight)
    assert torch.equal(v, attn.v_proj.weight)
    assert torch.equal(sd['layers.0.ln2.bias'], hf.vision_model.encoder.layers[0].layer_norm2.bias)
    assert sd['pos_embed'].shape == (1, 4, 36)


def _hf_interpolated_pos(hf, size):
    """HF's own position table for a ``size`` input with interpolate_pos_encoding=True."""
    emb = hf.vision_model.embeddings
    grid = size // emb.patch_size
    dummy = torch.zeros(1, grid * grid, emb.embed_dim)
    return emb.interpolate_pos_encoding(dummy, size, size)


def test_other_resolution_on_the_fly_and_on_load(tmp_path):
    """28 px checkpoint (4x4 grid) run at 42 px (6x6): on the fly, and built for 42 px and loaded."""
    hf = hf_vision(36, 3, 80, 2, 28, 7)
    hf.save_pretrained(tmp_path / 'hf')
    load_tool().convert(str(tmp_path / 'hf'), str(tmp_path / 'granvit.pth'))
    native, _ = granvit_from(str(tmp_path / 'granvit.pth'))
    big, _ = granvit_from(str(tmp_path / 'granvit.pth'), img_size=42)
    assert big.pos_embed.shape == (1, 36, 36)
    table = hf.vision_model.embeddings.position_embedding.weight.detach().unsqueeze(0)
    expect = resize_pos_embed(table, (4, 4), (6, 6))  # bicubic, align_corners=False, by output size
    torch.testing.assert_close(big.pos_embed.detach(), expect, rtol=0, atol=1e-6)
    x = torch.randn(2, 3, 42, 42)
    with torch.no_grad():
        a, b = native(x)[0], big(x)[0]
        hf_out = hf(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
        hf_table = _hf_interpolated_pos(hf, 42)
    assert (a - b).abs().max() <= TOL
    # HF (4.48) resizes by output size, bicubic, align_corners=False: the same table, the same outputs
    torch.testing.assert_close(hf_table, expect, rtol=0, atol=1e-6)
    assert (a - hf_out).abs().max() <= TOL
    assert (a - native(x)[0]).abs().max() == 0  # deterministic re-run


def test_naflex_linear_patch_weight_matches_channels_last_patches():
    """SigLIP2 NaFlex flattens each patch as (row, col, channel); our Conv2d weight must see the same."""
    torch.manual_seed(0)
    p, c_out = 4, 10
    img = torch.randn(2, 3, 12, 8)
    linear_w = torch.randn(c_out, p * p * 3)
    # transformers' convert_image_to_patches, on a channels-last image
    hwc = img.permute(0, 2, 3, 1)
    patches = hwc.reshape(2, 3, p, 2, p, 3).permute(0, 1, 3, 2, 4, 5).reshape(2, 6, p * p * 3)
    ref = patches @ linear_w.T
    conv = torch.nn.functional.conv2d(img, linear_to_conv_patch_weight(linear_w), stride=p)
    torch.testing.assert_close(conv.flatten(2).transpose(1, 2), ref)


def test_naflex_state_dict_converts_and_sets_interpolation():
    hf = hf_vision(36, 3, 80, 1, 28, 7)
    sd = dict(hf.state_dict())
    conv_w = sd['vision_model.embeddings.patch_embedding.weight']
    sd['vision_model.embeddings.patch_embedding.weight'] = conv_w.permute(0, 2, 3, 1).reshape(36, -1)
    kwargs = granvit_kwargs(sd, hf.config.to_dict())
    assert kwargs['interpolate_mode'] == 'bilinear' and kwargs['interpolate_antialias']
    assert kwargs['patch_size'] == 7 and kwargs['img_size'] == 28
    converted = convert_siglip_vision(sd)
    assert torch.equal(converted['patch_embed.weight'], conv_w)


def test_siglip2_naflex_model_if_available(tmp_path):
    """Full check against Siglip2VisionModel where transformers has it (>= 4.49)."""
    siglip2 = pytest.importorskip('transformers.models.siglip2.modeling_siglip2')
    torch.manual_seed(0)
    config = transformers.Siglip2VisionConfig(hidden_size=36, intermediate_size=80, num_hidden_layers=2,
                                              num_attention_heads=3, patch_size=7, num_patches=16)
    hf = scramble(siglip2.Siglip2VisionModel(config))
    model = GranViT(**granvit_kwargs(hf.state_dict(), config.to_dict()), out_type='raw').eval()
    model.load_state_dict(convert_siglip_vision(hf.state_dict()))
    img = torch.randn(1, 3, 35, 42)  # 5x6 grid, table resized from 4x4 with antialiased bilinear
    patches = img.permute(0, 2, 3, 1).reshape(1, 5, 7, 6, 7, 3).permute(0, 1, 3, 2, 4, 5).reshape(1, 30, -1)
    with torch.no_grad():
        ref = hf(pixel_values=patches, pixel_attention_mask=torch.ones(1, 30, dtype=torch.long),
                 spatial_shapes=torch.tensor([[5, 6]])).last_hidden_state
        assert (model(img)[0] - ref).abs().max() <= TOL


def test_prefix_and_unknown_keys():
    hf = hf_vision(36, 3, 80, 1, 14, 7)
    wrapped = {f'model.vision_tower.{k}': v for k, v in hf.state_dict().items()}
    assert set(strip_vision_prefix(wrapped)) == set(strip_vision_prefix(hf.state_dict()))
    bad = dict(hf.state_dict())
    bad['vision_model.encoder.extra.weight'] = torch.zeros(1)
    with pytest.raises(KeyError):
        convert_siglip_vision(bad)


def test_granvit_to_siglip_round_trip_and_loads_in_hf():
    """The reverse key map: GranViT -> HF SiglipVisionModel keys -> GranViT is exact, and HF loads it."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from granvit_mm.core.siglip_keys import convert_siglip_vision, granvit_to_siglip_vision
    from granvit_mm.models.backbones import GranViT
    vit = GranViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64), img_size=32,
                  patch_size=8)
    hf_sd = granvit_to_siglip_vision(vit.state_dict())
    back = convert_siglip_vision(hf_sd)
    assert set(back) == set(vit.state_dict())
    for k, v in vit.state_dict().items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0)
    hf = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=2, image_size=32, patch_size=8,
                                              vision_use_head=False))
    missing, unexpected = hf.load_state_dict(hf_sd, strict=False)
    assert unexpected == [] and [k for k in missing if 'position_ids' not in k] == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = vit.eval()(x)[-1].flatten(2).transpose(1, 2)
        theirs = hf.eval()(pixel_values=x).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
