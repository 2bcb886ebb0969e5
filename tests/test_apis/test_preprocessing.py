"""Inference pre-processing is the config's test pipeline: another image size, pad colour or box style in the
config changes what the API feeds the model and asks it (issue #22), as mmpretrain's inferencers do."""
import numpy as np
import torch
from fake_chat_model import fake_inferencer
from stage1_assets import wide_image

from granvit_mm.core.geometry import square_resize

C2B = 'Please provide the bounding box coordinate of the region this sentence describes: {}'
B2C = ('Describe the content contained within the normalized bounding box coordinates {} in no more than '
       '10 words.')


def pipeline_config(size, pad_val, box_style='decimal3', model_type='Fake'):
    """A config whose test dataloader pipeline is the tiny config's with another size / pad colour / style."""
    pipeline = [dict(type='granvit.LoadGranImage'),
                dict(type='granvit.SampleRegionTasks', tasks=dict(bbox2caption=4)),
                dict(type='granvit.GranSquareResize', size=size, pad_val=pad_val),
                dict(type='granvit.PackGranInputs', box_style=box_style)]
    return dict(model=dict(type=model_type), test_dataloader=dict(dataset=dict(pipeline=pipeline)))


def test_size_and_pad_colour_come_from_the_test_pipeline(monkeypatch, tmp_path):
    wide = wide_image(200, 100)
    seen = {}
    for size, pad in ((64, (127, 127, 127)), (32, (0, 0, 0)), (48, (255, 0, 0))):
        answers = {C2B.format('x'): '[0.100, 0.200, 0.600, 0.450]'}
        infer, fake = fake_inferencer(monkeypatch, tmp_path, answers, config=pipeline_config(size, pad))
        out = infer(wide, phrases=['x'], boxes=[[50, 20, 150, 80]])[0]
        pixels = fake.calls[-1]['pixels']
        assert tuple(pixels.shape) == (1, 3, size, size)
        square, _ = square_resize(wide, size, pad)
        expected = (torch.from_numpy(square).permute(2, 0, 1).float() - 127.5) / 127.5
        torch.testing.assert_close(pixels[0], expected)
        # the padding (bottom half) has the configured colour
        pad_pixel = (torch.tensor(pad, dtype=torch.float32) - 127.5) / 127.5
        torch.testing.assert_close(pixels[0, :, -1, 0], pad_pixel)
        # boxes are relative to the padded square whatever its size: same questions, same answer mapping
        assert fake.calls[-1]['questions'] == [[B2C.format('[0.250, 0.100, 0.750, 0.400]'), C2B.format('x')]]
        assert out['grounding'][0]['bbox'] == [20.0, 40.0, 120.0, 90.0]
        seen[size] = pixels
    assert len({tuple(p.shape) for p in seen.values()}) == 3


def test_a_stage1_config_sets_size_and_box_style(stage1, tmp_path):
    from mmengine.config import Config

    from granvit_mm.apis import DenseFeatureExtractor, GranViTInferencer
    cfg = Config.fromfile(stage1['config'])
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'].endswith('GranSquareResize'):
            step['size'] = 32
        if step['type'].endswith('PackGranInputs'):
            step['box_style'] = 'int999'
    infer = GranViTInferencer(cfg, stage1['checkpoint'], llm_path=stage1['llm_path'])
    assert (infer.model.input_size, infer.model.box_style) == (32, 'int999')
    asked = []
    original = infer.model.answer
    infer.model.answer = lambda pixels, questions, budget=None: (asked.append((pixels.shape, questions)),
                                                                 original(pixels, questions, budget))[1]
    infer(wide_image(200, 100), boxes=[[50, 20, 150, 80]])
    assert tuple(asked[0][0]) == (1, 3, 32, 32)
    assert asked[0][1] == [[B2C.format('[250, 100, 749, 400]')]]  # int999 box text (x 999, rounded)
    assert tuple(infer.features(wide_image(200, 100))[0].featmap.shape) == (64, 4, 4)  # 32 px / patch 8
    # the encoder alone reads the same pipeline
    feats = DenseFeatureExtractor(stage1['checkpoint'], config=cfg)(wide_image(200, 100))[0]
    assert tuple(feats.featmap.shape) == (64, 4, 4)
    default = DenseFeatureExtractor(stage1['checkpoint'], config=stage1['config'])(wide_image(200, 100))[0]
    assert tuple(default.featmap.shape) == (64, 8, 8)


def test_a_pipeline_without_the_resize_is_refused():
    import pytest

    from granvit_mm.apis import PipelinePreprocessor
    with pytest.raises(ValueError, match='no GranSquareResize'):
        PipelinePreprocessor([dict(type='granvit.PackGranInputs')])
    np.testing.assert_equal(PipelinePreprocessor.default(16).size, 16)
