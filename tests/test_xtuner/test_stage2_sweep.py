"""tools/analysis_tools/stage2_sweep.py replays XTuner's stage-2 step: same loss, same projector, same
scoring."""
import numpy as np
import pytest
import torch
from repo_tools import load_tool
from stage2_assets import build_llava, sample_images

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from granvit_mm.core.image_input import to_model_input

sweep = load_tool('tools/analysis_tools/stage2_sweep.py')


def test_replayed_loss_equals_the_xtuner_models(tiny_llm_dir, encoder_dir):
    from xtuner.dataset.collate_fns import default_collate_fn
    model = build_llava(tiny_llm_dir, encoder_dir).eval()
    pixels = torch.stack([torch.from_numpy(to_model_input(im, 64)[0]) for im in sample_images(2)])
    rows = [([5, 6, IMAGE_TOKEN_INDEX, 7, 8, 9], [IGNORE_INDEX] * 4 + [8, 9], 1),
            ([5, IMAGE_TOKEN_INDEX, 7, 8, 9, 10, 11], [IGNORE_INDEX] * 3 + [8, 9, 10, 11], 0)]
    batch = default_collate_fn([dict(input_ids=ids, labels=labels, pixel_values=pixels[img])
                                for ids, labels, img in rows])
    with torch.no_grad():
        want = model(batch['data'], mode='loss')['loss']
        vis = model.visual_tokens(pixels)
        x, y, mask = sweep._embed_rows(model.llm, model.projector, vis, rows)
        got = model.llm(inputs_embeds=x, attention_mask=mask, labels=y).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert x.shape[1] == 6 + 64 and int(mask[0].sum()) == 5 + 64  # every patch, right padding


def test_projector_is_xtuners_with_the_stage1_weights(tiny_llm_dir, encoder_dir):
    model = build_llava(tiny_llm_dir, encoder_dir)
    proj = sweep.build_projector(64, model.llm.config.hidden_size, 'stage1', encoder_dir)
    tokens = torch.randn(2, 5, 64)
    torch.testing.assert_close(proj(tokens), model.projector(tokens))
    with pytest.raises(ValueError, match='stage1 or random'):
        sweep.build_projector(64, 64, 'imagenet', encoder_dir)


def test_lr_schedule_and_score():
    v = dict(sweep.VARIANT, iters=100, warmup=10)
    assert sweep._lr_factor(0, v) == pytest.approx(0.01) and sweep._lr_factor(10, v) == pytest.approx(1.0)
    assert sweep._lr_factor(100, v) == pytest.approx(v['eta_min_ratio'])
    s = sweep.score(['[0.000, 0.000, 0.500, 0.500]', 'no box', '[0.5, 0.5, 1.0, 1.0]'],
                    np.array([[0, 0, 0.5, 0.5], [0, 0, 1, 1], [0, 0, 0.5, 0.5]]),
                    ['object', 'text', 'object'],
                    'decimal3')
    assert s['acc'] == pytest.approx(100 / 3) and s['unparsed'] == 1 and s['object_acc'] == 50.0
    assert s['miou'] == pytest.approx(100 / 3)


def test_position_code_is_unit_rms_and_tells_every_patch_apart():
    code = sweep.position_code(64, 64)
    assert code.shape == (64, 64)
    torch.testing.assert_close(code.pow(2).mean(), torch.tensor(1.0))
    assert torch.cdist(code, code).add(torch.eye(64) * 1e3).min() > 0.1  # no two patches share a code
    # a linear read-out recovers (row, col) exactly: the position is explicit, not something to learn
    rc = torch.tensor([[i // 8, i % 8] for i in range(64)], dtype=torch.float32)
    fit = torch.linalg.lstsq(torch.cat([code, torch.ones(64, 1)], 1), rc).solution
    err = (torch.cat([code, torch.ones(64, 1)], 1) @ fit - rc).abs().max()
    assert err < 0.5
