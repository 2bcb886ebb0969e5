"""tools/model_converters/granvit_to_hf.py: stage-1 checkpoint -> SiglipVisionModel directory,
round-tripped."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from stage2_assets import ROOT, STAGE1_TINY, env

from granvit_mm.core.siglip_keys import convert_siglip_vision

TOOL = osp.join(ROOT, 'tools', 'model_converters', 'granvit_to_hf.py')


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=300)


def _vit(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.parametrize('which, prefix', [('student', 'backbone.'), ('teacher', 'teacher.module.')])
def test_cli_exports_a_loadable_tower_that_round_trips(stage1_ckpt, tmp_path, which, prefix):
    from transformers import SiglipVisionModel
    out = tmp_path / which
    proc = _run(stage1_ckpt, out, '--which', which)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'which={which} visual_layer=-1 image_size=64 patch_size=8 hidden_size=64' in proc.stdout
    assert {'config.json', 'model.safetensors', 'preprocessor_config.json', 'image_processor.py',
            'projector'} <= set(os.listdir(out))
    hf, info = SiglipVisionModel.from_pretrained(out, output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys']
    assert hf.config.vision_use_head is False and hf.config.granvit_visual_layer == -1
    # the reverse conversion (the stage-1 importer's key map) gives back the checkpoint's ViT exactly
    stage1 = torch.load(stage1_ckpt, map_location='cpu', weights_only=True)['state_dict']
    expected = _vit(stage1, prefix)
    back = convert_siglip_vision(hf.state_dict())
    assert set(back) == set(expected) | {'norm.weight', 'norm.bias'}
    for k, v in expected.items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0)
    # post_layernorm is not part of the tokens: exported as the identity affine
    assert torch.equal(back['norm.weight'], torch.ones(64))
    assert torch.equal(back['norm.bias'], torch.zeros(64))
    other = _vit(stage1, 'teacher.module.' if which == 'student' else 'backbone.')
    assert not torch.equal(back['layers.0.attn.qkv.weight'], other['layers.0.attn.qkv.weight'])


def test_siglip_to_granvit_to_siglip_keeps_every_hidden_state():
    """HF SigLIP -> GranViT (stage-1 import) -> HF SigLIP (this export): all hidden states unchanged."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from granvit_mm.core.siglip_keys import granvit_kwargs
    from granvit_mm.core.visual_tokens import granvit_token_kwargs
    from granvit_mm.models.backbones import GranViT
    from granvit_mm.xtuner.encoder import to_siglip_vision_model
    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=36, num_attention_heads=3, intermediate_size=80,
                                num_hidden_layers=3, image_size=28, patch_size=7)
    src = SiglipVisionModel(config).eval()
    with torch.no_grad():
        for name, p in src.named_parameters():
            p.add_(torch.randn_like(p) * (0.2 if 'norm' in name else 0.05))
    vit = GranViT(**granvit_kwargs(src.state_dict(), config.to_dict()), out_type='raw',
                  **granvit_token_kwargs())
    state = convert_siglip_vision(src.state_dict())
    vit.load_state_dict({k: v for k, v in state.items() if not k.startswith('norm.')}, strict=True)
    back = to_siglip_vision_model(vit)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        a = src(x, output_hidden_states=True).hidden_states
        b = back(x, output_hidden_states=True).hidden_states
    assert len(a) == len(b) == 4
    for ha, hb in zip(a, b):
        assert (ha - hb).abs().max() <= 1e-5


def _init_config(tmp_path, init_cfg):
    """The tiny stage-1 config with another ViT start (it starts from `make tiny-siglip`'s checkpoint)."""
    path = tmp_path / f'tiny_{len(list(tmp_path.glob("tiny_*.py")))}.py'
    path.write_text(f'_base_ = [{STAGE1_TINY!r}]\nmodel = dict(backbone=dict(init_cfg={init_cfg!r}))\n')
    return path


def test_from_init_exports_the_starting_vit_without_projector(tmp_path):
    from transformers import SiglipVisionModel
    random_start = _init_config(tmp_path, None)
    out = tmp_path / 'init'
    proc = _run('--from-init', '--config', random_start, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'which=init' in proc.stdout and not (out / 'projector').exists()
    a = SiglipVisionModel.from_pretrained(out).state_dict()
    proc = _run('--from-init', '--config', random_start, tmp_path / 'again')
    b = SiglipVisionModel.from_pretrained(tmp_path / 'again').state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the config's seed makes it reproducible

    # a Pretrained start (the tiny SigLIP's place) is exported as that checkpoint's ViT
    from granvit_mm.models.backbones import GranViT
    vit = GranViT(arch='tiny', img_size=64, patch_size=8)
    ckpt = tmp_path / 'start.pth'
    torch.save(vit.state_dict(), ckpt)
    init_config = _init_config(tmp_path, dict(type='Pretrained', checkpoint=str(ckpt)))
    proc = _run('--from-init', '--config', init_config, tmp_path / 'pretrained')
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = SiglipVisionModel.from_pretrained(tmp_path / 'pretrained').state_dict()
    patch = 'vision_model.embeddings.patch_embedding.weight'
    torch.testing.assert_close(c[patch], vit.state_dict()['patch_embed.weight'])
    assert not torch.equal(c[patch], a[patch])


def test_bad_inputs_say_what_is_wrong(stage1_ckpt, tmp_path):
    state = torch.load(stage1_ckpt, map_location='cpu', weights_only=True)
    state['state_dict']['backbone.norm.weight'] = torch.ones(64)
    state['state_dict']['backbone.norm.bias'] = torch.zeros(64)
    old = tmp_path / 'old.pth'
    torch.save(state, old)
    proc = _run(old, tmp_path / 'out')
    assert proc.returncode != 0 and 'post-norm visual tokens' in proc.stderr
    assert 'Traceback' not in proc.stderr
    proc = _run(tmp_path / 'missing.pth', tmp_path / 'out')
    assert proc.returncode != 0 and 'checkpoint not found' in proc.stderr
    proc = _run('--from-init', tmp_path / 'out')
    assert proc.returncode != 0 and '--from-init needs --config' in proc.stderr
