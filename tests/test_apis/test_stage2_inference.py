"""Stage-2 models in the inference API: an XTuner checkpoint (config + iter_N.pth) and its transformers LLaVA
export, told apart by ``stage='auto'``, answering as the evaluation does, with boxes in the image's own
pixels.
"""
import numpy as np
import pytest
import torch
from stage1_assets import synth_images, wide_image

from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.image_input import to_model_input
from granvit_mm.core.prompts import caption2bbox_question

PHRASE = 'a small red circle'


@pytest.fixture(scope='module')
def xtuner_inferencer(stage2):
    from granvit_mm.apis import GranViTInferencer
    return GranViTInferencer(stage2['config'], stage2['checkpoint'])


@pytest.fixture(scope='module')
def hf_inferencer(stage2):
    from granvit_mm.apis import GranViTInferencer
    return GranViTInferencer(stage2['hf_dir'])


def test_auto_tells_the_kinds_apart(stage1, stage2, xtuner_inferencer, hf_inferencer):
    from granvit_mm.apis import GranViTInferencer, Stage1ChatModel
    from granvit_mm.apis.llava_chat_models import HFLlavaChatModel, XTunerLLaVAChatModel
    assert isinstance(xtuner_inferencer.model, XTunerLLaVAChatModel)
    assert isinstance(hf_inferencer.model, HFLlavaChatModel)
    assert hf_inferencer.checkpoint == stage2['hf_dir']
    # the export as checkpoint of a config-less call, too
    assert isinstance(GranViTInferencer(None, stage2['hf_dir']).model, HFLlavaChatModel)
    s1 = GranViTInferencer(stage1['config'], stage1['checkpoint'], llm_path=stage1['llm_path'])
    assert isinstance(s1.model, Stage1ChatModel)
    for infer in (xtuner_inferencer, hf_inferencer, s1):
        assert (infer.model.input_size, infer.model.box_style) == (64, 'decimal3')


def test_a_stage1_checkpoint_is_not_a_stage2_one(stage1, stage2):
    from granvit_mm.apis import GranViTInferencer
    with pytest.raises(KeyError, match='does not fit the model'):
        GranViTInferencer(stage2['config'], stage1['checkpoint'], stage='stage2')


def test_a_missing_llm_says_what_to_do(stage2, tmp_path):
    from granvit_mm.apis import GranViTInferencer
    from granvit_mm.core.paths import MissingPathError
    with pytest.raises(MissingPathError, match='run from the repository root, or pass llm_path'):
        GranViTInferencer(stage2['config'], stage2['checkpoint'], llm_path=str(tmp_path / 'no_llm'))


def test_xtuner_answers_are_the_evaluations(stage2, xtuner_inferencer):
    """The inferencer's answers = ``greedy_answers`` (eval_stage2's decoding) on ``to_model_input`` pixels."""
    from granvit_mm.xtuner.llava_model import greedy_answers
    images = [wide_image(200, 100), np.asarray(synth_images(1)[0][0])]
    got = [g['answer'] for im in images for g in xtuner_inferencer.ground(im, [PHRASE])]
    model = xtuner_inferencer.model
    pixels = torch.stack([torch.from_numpy(to_model_input(im, 64)[0]) for im in images])
    expected = greedy_answers(model.model, model.tokenizer, pixels, [[caption2bbox_question(PHRASE)]] * 2,
                              max_new_tokens=model.max_new_tokens_for('[0.888, 0.888, 0.888, 0.888]'))
    assert got == [a[0] for a in expected]
    assert all(got)


def test_the_export_answers_like_the_checkpoint(xtuner_inferencer, hf_inferencer):
    images = [wide_image(200, 100), wide_image(90, 120, seed=1)]
    kwargs = dict(boxes=[[[10, 10, 60, 50]], [[5, 5, 80, 100]]], phrases=PHRASE, global_caption=True,
                  batch_size=2)
    assert hf_inferencer(images, **kwargs) == xtuner_inferencer(images, **kwargs)
    for infer in (xtuner_inferencer, hf_inferencer):  # the visual tokens on the 8x8 patch grid
        feats = infer.features(images[0])[0]
        assert tuple(feats.featmap.shape) == (64, 8, 8) and feats.image_grid == (4, 8)
    torch.testing.assert_close(hf_inferencer.features(images[0])[0].featmap,
                               xtuner_inferencer.features(images[0])[0].featmap)


def test_stage2_boxes_come_back_in_image_pixels(xtuner_inferencer, monkeypatch):
    """A stage-2 answer is relative to the padded square: undone with the image's SquareGeometry."""
    model = xtuner_inferencer.model
    monkeypatch.setattr(model, 'answer', lambda pixels, questions, budget=None: [
        ['[0.100, 0.200, 0.600, 0.450]'] * len(q) for q in questions])
    image = wide_image(200, 100)  # padded to 200x200 at the bottom
    out = xtuner_inferencer.ground(image, PHRASE)[0]
    assert out['bbox'] == [20.0, 40.0, 120.0, 90.0]
    expected = SquareGeometry(100, 200, 64).from_normalized(np.array([.1, .2, .6, .45]))[0]
    np.testing.assert_allclose(out['bbox'], expected, atol=0.01)
