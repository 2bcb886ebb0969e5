"""The SigLIP <-> GranViT key map on hand-made state dicts: its errors, defaults and edge cases
(tests/test_models/test_backbones/test_siglip2_conversion.py checks the converted towers against
transformers)."""
import pytest
import torch

from granvit_mm.core import siglip_keys as sk


def hf_state(c=8, p=2, grid=2, layers=2, ffn=16, prefix='vision_model.', naflex=False, head=True):
    """A SigLIP vision tower's state dict with distinct values in every tensor."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g)

    sd = {'embeddings.patch_embedding.weight': t(c, p * p * 3) if naflex else t(c, 3, p, p),
          'embeddings.patch_embedding.bias': t(c),
          'embeddings.position_embedding.weight': t(grid * grid, c),
          'embeddings.position_ids': torch.arange(grid * grid)[None],
          'post_layernorm.weight': t(c), 'post_layernorm.bias': t(c)}
    for i in range(layers):
        for kind in ('weight', 'bias'):
            for name, shape in [('layer_norm1', (c, )), ('layer_norm2', (c, )), ('self_attn.q_proj', (c, c)),
                                ('self_attn.k_proj', (c, c)), ('self_attn.v_proj', (c, c)),
                                ('self_attn.out_proj', (c, c)), ('mlp.fc1', (ffn, c)), ('mlp.fc2', (c, ffn))]:
                sd[f'encoder.layers.{i}.{name}.{kind}'] = t(*(shape if kind == 'weight' else shape[:1]))
    if head:
        sd['head.probe'] = t(1, 1, c)
    return {prefix + k: v for k, v in sd.items()}


def test_convert_maps_every_key_and_owns_its_tensors():
    hf = hf_state()
    out = sk.convert_siglip_vision(hf)
    names = ['ln1', 'ln2', 'attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2']
    assert set(out) == {'patch_embed.weight', 'patch_embed.bias', 'pos_embed', 'norm.weight', 'norm.bias'} | {
        f'layers.{i}.{n}.{kind}' for i in range(2) for n in names for kind in ('weight', 'bias')}
    v = 'vision_model.'
    assert torch.equal(out['pos_embed'], hf[v + 'embeddings.position_embedding.weight'][None])
    assert torch.equal(out['norm.bias'], hf[v + 'post_layernorm.bias'])
    assert torch.equal(out['layers.1.mlp.fc2.bias'], hf[v + 'encoder.layers.1.mlp.fc2.bias'])
    assert torch.equal(out['layers.1.attn.proj.weight'], hf[v + 'encoder.layers.1.self_attn.out_proj.weight'])
    assert torch.equal(out['layers.1.attn.qkv.bias'], torch.cat(
        [hf[f'{v}encoder.layers.1.self_attn.{n}_proj.bias'] for n in 'qkv']))
    for key, val in out.items():
        assert val.is_contiguous(), key
        assert not any(val.data_ptr() == src.data_ptr() for src in hf.values()), key  # copies, not views
    # and back: the exact HF keys (no head, no position ids), under any prefix
    back = sk.granvit_to_siglip_vision(out)
    assert set(back) == {k for k in hf if not k.startswith(v + 'head.') and 'position_ids' not in k}
    for key, val in back.items():
        assert torch.equal(val, hf[key]) and val.is_contiguous(), key
    assert set(sk.granvit_to_siglip_vision(out, prefix='')) == {k[len(v):] for k in back}
    assert sk.granvit_to_siglip_vision(out)[v + 'embeddings.position_embedding.weight'].shape == (4, 8)


def test_prefix_is_whatever_precedes_the_patch_embedding():
    hf = hf_state(prefix='model.vision_tower.vision_model.')
    hf['model.language_model.w'] = torch.zeros(1)  # another tower in the same file: not ours
    stripped = sk.strip_vision_prefix(hf)
    assert set(stripped) == set(hf_state(prefix=''))
    assert set(sk.strip_vision_prefix(hf_state(prefix=''))) == set(stripped)
    with pytest.raises(KeyError) as err:
        sk.strip_vision_prefix({'a.w': torch.zeros(1)})
    assert err.value.args[0] == "expected one key ending with 'embeddings.patch_embedding.weight', found []"
    two = dict(hf_state(prefix='a.'), **hf_state(prefix='b.'))
    with pytest.raises(KeyError, match='found \\[.a.embeddings.patch_embedding.weight., '
                                       '.b.embeddings.patch_embedding.weight.\\]'):
        sk.strip_vision_prefix(two)


def test_unknown_keys_are_refused_by_name():
    hf = hf_state()
    hf['vision_model.encoder.extra.weight'] = torch.zeros(1)
    with pytest.raises(KeyError) as err:
        sk.convert_siglip_vision(hf)
    assert err.value.args[0] == "unexpected vision tower keys: ['encoder.extra.weight']"
    many = hf_state()
    many.update({f'vision_model.x{i}': torch.zeros(1) for i in range(10)})
    with pytest.raises(KeyError) as err:
        sk.convert_siglip_vision(many)
    assert err.value.args[0] == f'unexpected vision tower keys: {[f"x{i}" for i in range(8)]}'
    # position-id buffers (non-persistent in HF, saved by some versions) are not weights: ignored anywhere
    buffers = dict(hf_state(), **{'vision_model.position_ids': torch.arange(4)})
    assert set(sk.convert_siglip_vision(buffers)) == set(sk.convert_siglip_vision(hf_state()))
    assert sk.num_layers_in(sk.strip_vision_prefix(hf_state(layers=3))) == 3
    assert sk.num_layers_in({'encoder.layers.7.mlp.fc1.weight': 0}) == 8
    assert sk.num_layers_in({}) == 0


def test_naflex_patch_weight():
    hf = hf_state(naflex=True)
    assert sk.is_naflex(sk.strip_vision_prefix(hf)) and not sk.is_naflex(sk.strip_vision_prefix(hf_state()))
    out = sk.convert_siglip_vision(hf)
    w = hf['vision_model.embeddings.patch_embedding.weight']
    assert out['patch_embed.weight'].shape == (8, 3, 2, 2)
    # (C, row, col, channel) -> (C, channel, row, col)
    assert float(out['patch_embed.weight'][3, 2, 1, 0]) == float(w[3, (1 * 2 + 0) * 3 + 2])
    one_channel = sk.linear_to_conv_patch_weight(torch.arange(8.).reshape(2, 4), in_channels=1)
    assert one_channel.tolist() == [[[[0, 1], [2, 3]]], [[[4, 5], [6, 7]]]] and one_channel.is_contiguous()
    with pytest.raises(ValueError) as err:
        sk.linear_to_conv_patch_weight(torch.zeros(2, 24))
    assert str(err.value) == 'cannot split 24 inputs into 3 x p x p'


def test_granvit_kwargs_from_weights_and_config():
    hf = hf_state(c=12, p=2, grid=3, layers=2, ffn=20)
    kw = sk.granvit_kwargs(hf, {'num_attention_heads': 3, 'layer_norm_eps': 1e-5})
    assert kw == dict(arch=dict(embed_dims=12, num_layers=2, num_heads=3, feedforward_channels=20),
                      img_size=6, patch_size=2, norm_eps=1e-5)
    full = {'text_config': {'hidden_act': 'gelu'},
            'vision_config': {'num_attention_heads': '4', 'hidden_act': 'gelu_pytorch_tanh'}}
    kw = sk.granvit_kwargs(hf, full)  # a SiglipConfig: its vision part; HF's defaults for what it lacks
    assert kw['arch']['num_heads'] == 4 and kw['norm_eps'] == 1e-6 and type(kw['norm_eps']) is float
    kw = sk.granvit_kwargs(hf_state(c=24), {})  # HF's default: 12 heads
    assert kw['arch']['num_heads'] == 12
    kw = sk.granvit_kwargs(hf_state(c=12, naflex=True, p=2, grid=4), {'layer_norm_eps': 1})
    assert kw['patch_size'] == 2 and kw['img_size'] == 8 and kw['norm_eps'] == 1.0
    assert type(kw['norm_eps']) is float
    assert (kw['interpolate_mode'], kw['interpolate_antialias']) == ('bilinear', True)
    with pytest.raises(ValueError) as err:
        sk.granvit_kwargs(hf, {'hidden_act': 'gelu'})
    assert str(err.value) == "GranViT implements tanh-GELU only, the checkpoint uses 'gelu'"
    with pytest.raises(ValueError) as err:
        sk.granvit_kwargs(hf, {'num_attention_heads': 5})
    assert str(err.value) == 'hidden size 12 is not divisible by 5 heads'
    with pytest.raises(ValueError) as err:
        sk.granvit_kwargs(hf_state(grid=1, head=False) | {
            'vision_model.embeddings.position_embedding.weight': torch.zeros(6, 8)}, {})
    assert str(err.value) == '6 position embeddings do not form a square grid'


def test_hf_vision_config():
    assert sk.hf_vision_config(None) == {} and sk.hf_vision_config({}) == {}
    assert sk.hf_vision_config({'vision_config': None, 'x': 1}) == {}
    vision = {'num_attention_heads': 4}
    out = sk.hf_vision_config({'vision_config': vision, 'text_config': {}})
    assert out == vision and out is not vision
    out = sk.hf_vision_config(vision)  # already a vision config
    assert out == vision and out is not vision
    assert sk.square_grid(16) == (4, 4) and sk.square_grid(1) == (1, 1)


def test_resize_pos_embed():
    pos = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(1, 4, 3)
    assert sk.resize_pos_embed(pos, (2, 2), [2.0, 2]) is pos  # nothing to do
    up = sk.resize_pos_embed(pos, (2, 2), (4, 4), mode='nearest')
    assert up.shape == (1, 16, 3)
    grid = pos.reshape(2, 2, 3)
    assert torch.equal(up.reshape(4, 4, 3), grid.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # HF SigLIP's interpolate_pos_encoding: bicubic, align_corners=False, by default
    ref = torch.nn.functional.interpolate(grid.permute(2, 0, 1)[None], size=(3, 5), mode='bicubic',
                                          align_corners=False).permute(0, 2, 3, 1).reshape(1, 15, 3)
    torch.testing.assert_close(sk.resize_pos_embed(pos, (2, 2), (3, 5)), ref, rtol=0, atol=0)
    # SigLIP2 NaFlex's: bilinear with antialiasing (shrinking a 4x4 table to 3x2 here)
    pos4 = torch.randn(1, 16, 3, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.interpolate(pos4.reshape(1, 4, 4, 3).permute(0, 3, 1, 2), size=(3, 2),
                                          mode='bilinear', antialias=True, align_corners=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, 6, 3)
    out = sk.resize_pos_embed(pos4, (4, 4), (3, 2), 'bilinear', True)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert (ref - sk.resize_pos_embed(pos4, (4, 4), (3, 2), 'bilinear')).abs().max() > 0.01
    # a non-square source grid (row-major, H x W)
    rect = torch.arange(2 * 3, dtype=torch.float32).reshape(1, 6, 1)
    out = sk.resize_pos_embed(rect, (2, 3), (4, 6), mode='nearest')
    assert out.reshape(4, 6).tolist() == [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    # modes that take no align_corners
    for mode in ('area', 'nearest-exact'):
        out = sk.resize_pos_embed(pos4, (4, 4), (2, 2), mode)
        ref = torch.nn.functional.interpolate(pos4.reshape(1, 4, 4, 3).permute(0, 3, 1, 2), size=(2, 2),
                                              mode=mode)
        torch.testing.assert_close(out, ref.permute(0, 2, 3, 1).reshape(1, 4, 3), rtol=0, atol=0)
    half = sk.resize_pos_embed(pos.half(), (2, 2), (3, 3))
    assert half.dtype == torch.float16 and half.shape == (1, 9, 3)
    with pytest.raises(AssertionError) as err:
        sk.resize_pos_embed(pos, (3, 3), (4, 4))
    assert str(err.value) == 'pos_embed has 4 tokens, not a (3, 3) grid'
