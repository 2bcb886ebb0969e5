"""The encoder alone: stage-1 checkpoints (+ config), a converted SigLIP2 tower (no config), PCA pictures."""

import numpy as np
import pytest
import torch
from PIL import Image
from repo_tools import load_tool
from stage1_assets import wide_image

from granvit_mm.apis import (DenseFeatureExtractor, draw_result, feature_view, pca_components, pca_rgb,
                             side_by_side)
from granvit_mm.apis.dense_features import DenseFeatures
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.image_input import to_model_input


def test_stage1_checkpoint_with_config_matches_the_inferencer(stage1, inferencer):
    img = wide_image(120, 90)
    student = DenseFeatureExtractor(stage1['checkpoint'], config=stage1['config'])
    assert student.input_size == 64  # the config's pipeline size
    torch.testing.assert_close(student(img)[0].featmap, inferencer.features(img)[0].featmap)
    state = stage1['state_dict']
    teacher = DenseFeatureExtractor(stage1['checkpoint'], config=stage1['config'], prefix='teacher.module.')
    for k, v in teacher.backbone.state_dict().items():
        torch.testing.assert_close(v, state['teacher.module.' + k])
    big = DenseFeatureExtractor(stage1['checkpoint'], config=stage1['config'], input_size=96)
    assert big(img)[0].featmap.shape == (64, 12, 12)  # any input size: position table resized


def test_stage1_maps_are_the_training_models_tokens(stage1, tmp_path):
    """Teeth: the extractor's student and teacher maps against the stage-1 model itself (built from the
    config, loaded with the checkpoint), on the training pre-processing; a teacher unlike the student tells
    them apart."""
    from mmengine.config import Config

    from granvit_mm.registry import MODELS
    state = dict(stage1['state_dict'])
    g = torch.Generator().manual_seed(0)
    for k in [k for k in state if k.startswith('teacher.module.') and state[k].is_floating_point()]:
        state[k] = state[k] + 0.05 * torch.randn(state[k].shape, generator=g)
    ckpt = str(tmp_path / 'iter_2.pth')
    torch.save(dict(meta=dict(iter=2), state_dict=state), ckpt)
    cfg = Config.fromfile(stage1['config'])
    cfg.model.head.llm_path = stage1['llm_path']
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    model.load_state_dict(state)
    img = wide_image(120, 90)
    x = torch.from_numpy(to_model_input(img, 64)[0])[None]
    with torch.no_grad():
        tokens = model(x, mode='tensor')[0]  # the visual tokens the projector reads, as a (C, h, w) map
        teacher_tokens = model.teacher.module(x)[-1][0]
    student = DenseFeatureExtractor(ckpt, config=stage1['config'])(img)[0].featmap
    teacher = DenseFeatureExtractor(ckpt, config=stage1['config'], prefix='teacher.module.')(img)[0].featmap
    torch.testing.assert_close(student, tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(teacher, teacher_tokens, rtol=1e-5, atol=1e-5)
    assert float((student - teacher).abs().max()) > 1e-2


def test_needs_an_architecture(stage1):
    with pytest.raises(ValueError, match='cannot tell the ViT architecture'):
        DenseFeatureExtractor(stage1['checkpoint'])


def _converter():
    return load_tool('tools/model_converters/siglip2_to_granvit.py')


def test_converted_siglip2_checkpoint_needs_no_config(tmp_path):
    from transformers import SiglipVisionConfig, SiglipVisionModel
    torch.manual_seed(0)
    hf = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                              num_hidden_layers=2, image_size=32, patch_size=8)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path / 'hf')
    _converter().convert(str(tmp_path / 'hf'), str(tmp_path / 'siglip.pth'))
    extractor = DenseFeatureExtractor(str(tmp_path / 'siglip.pth'))  # kwargs from the checkpoint's meta
    assert extractor.input_size == 32 and extractor.patch_size == 8
    img = wide_image(50, 40)
    feats = extractor([img, Image.fromarray(img)], batch_size=2)
    pixels = torch.from_numpy(to_model_input(img, 32)[0])[None]
    with torch.no_grad():
        tokens = hf(pixel_values=pixels).last_hidden_state[0]  # (16, 32), post_layernorm applied
    torch.testing.assert_close(feats[0].featmap.flatten(1).T, tokens, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feats[1].featmap, feats[0].featmap)
    # final_norm=False: the tokens stage 1 reads (HF hidden_states[-1], before post_layernorm)
    with torch.no_grad():
        hidden = hf(pixel_values=pixels, output_hidden_states=True).hidden_states[-1][0]
    pre_norm = DenseFeatureExtractor(str(tmp_path / 'siglip.pth'), final_norm=False)(img)[0]
    torch.testing.assert_close(pre_norm.featmap.flatten(1).T, hidden, atol=1e-4, rtol=1e-4)
    printed = dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64), img_size=32,
                   patch_size=8)  # the kwargs the converter prints work too
    torch.testing.assert_close(
        DenseFeatureExtractor(str(tmp_path / 'siglip.pth'), backbone=printed)(img)[0].featmap,
        feats[0].featmap)


def _planted(rows=4, cols=6, channels=16, seed=0):
    """Features whose first principal direction is a known ramp along x."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(channels, generator=g)
    ramp = torch.linspace(-1, 1, cols).repeat(rows, 1)  # (rows, cols)
    feats = ramp[None] * direction[:, None, None] * 10 + 0.01 * torch.randn(channels, rows, cols, generator=g)
    return feats, direction


def test_pca_recovers_the_main_direction_with_a_fixed_sign():
    feats, direction = _planted()
    proj = pca_components(feats.flatten(1).T)
    corr = np.corrcoef(proj[:, 0].numpy(), torch.linspace(-1, 1, 6).repeat(4).numpy())[0, 1]
    assert abs(corr) > 0.999
    flipped = pca_components(-feats.flatten(1).T)
    # sign fixed by the largest loading: negating the features flips the projections consistently
    assert torch.allclose(flipped[:, 0].abs(), proj[:, 0].abs(), atol=1e-4)


def test_pca_rgb_drops_padding_patches_and_spans_the_range():
    feats, _ = _planted(rows=8, cols=8)
    geom = SquareGeometry(height=100, width=200, size=64)  # wide: the lower half of the grid is padding
    feats[:, 4:] = 1000.0  # padding patches that would dominate a PCA fitted on them
    df = DenseFeatures(feats, geom, 8)
    rgb = pca_rgb([df])[0]
    assert rgb.shape == (4, 8, 3) and rgb.dtype == np.uint8
    red = rgb[..., 0].astype(int)
    assert red.min() == 0 and red.max() == 255
    assert (np.diff(red.mean(0)) != 0).all() and np.all(np.sign(np.diff(red.mean(0))) == np.sign(
        np.diff(red.mean(0))[0]))  # the ramp stays monotonic in the first colour
    view = feature_view([df], max_side=400)[0]
    assert view.shape == (200, 400, 3)  # the image's 2:1 aspect
    both = side_by_side([view, view[:100]], labels=['a', 'b'])
    assert both.shape == (200 + 22, 400 + 8 + 400, 3)


def test_draw_result_marks_boxes():
    img = np.zeros((100, 200, 3), np.uint8)
    result = dict(regions=[dict(bbox=[50, 20, 150, 80], caption='a box')],
                  grounding=[dict(phrase='p', bbox=[10, 10, 40, 40], answer='[..]'),
                             dict(phrase='q', bbox=None, answer='?')])
    out = draw_result(img, result)
    assert out.shape == img.shape and (img == 0).all()  # a copy
    assert tuple(out[50, 50]) == (30, 144, 255)  # left edge of the region box
    assert tuple(out[25, 40]) == (255, 64, 0)  # right edge of the grounded box
    assert tuple(out[95, 195]) == (0, 0, 0)


@pytest.mark.parametrize('hw, grid', [
    ((97, 128), (6, 8)),  # 97 * 0.5 = 48.5 px = 6.06 patches: the 7th row is 94% padding, dropped
    ((104, 128), (7, 8)),  # 52 px = 6.5 patches: a half-covered row is kept
    ((128, 60), (8, 4)),  # 30 px = 3.75 patches
    ((300, 2), (8, 1)),  # at least one column
])
def test_image_grid_hand_computed(hw, grid):
    df = DenseFeatures(torch.zeros(4, 8, 8), SquareGeometry(hw[0], hw[1], 64), 8)
    assert df.image_grid == grid and df.image_features().shape == (4,) + grid
