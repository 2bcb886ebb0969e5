"""The inferencer's questions and answers in the image's own pixels: hand-computed on non-square images.

A scripted chat model (no LLM) records the exact questions and returns chosen answers, so the numbers below
test the pad-to-square geometry, the paper prompts and the box parsing end to end.
"""
import numpy as np
import pytest
import torch
from fake_chat_model import fake_inferencer
from stage1_assets import wide_image

from granvit_mm.core.image_input import to_model_input

B2C = ('Describe the content contained within the normalized bounding box coordinates {} in no more than '
       '10 words.')
C2B = 'Please provide the bounding box coordinate of the region this sentence describes: {}'
GLOBAL = 'Describe in detail what is shown in the image in one paragraph'


def test_box_questions_are_relative_to_the_padded_square(monkeypatch, tmp_path):
    infer, fake = fake_inferencer(monkeypatch, tmp_path)
    wide = wide_image(200, 100)  # W=200, H=100: padded to 200x200 (bottom), so boxes are divided by 200
    tall = wide_image(90, 300, seed=1)  # W=90, H=300: padded to 300x300 (right), divided by 300
    infer([wide, tall], boxes=[[[50, 20, 150, 80], [0, 0, 200, 100]], [[9, 30, 90, 300]]],
          phrases=[None, 'a tall thing'], global_caption=True, batch_size=2)
    assert len(fake.calls) == 1  # one forward for the batch
    assert fake.calls[0]['questions'] == [
        [B2C.format('[0.250, 0.100, 0.750, 0.400]'), B2C.format('[0.000, 0.000, 1.000, 0.500]'), GLOBAL],
        [B2C.format('[0.030, 0.100, 0.300, 1.000]'), C2B.format('a tall thing'), GLOBAL]]
    # pixels are exactly the shared pre-processing (pad right/bottom with grey, resize to 64, normalise)
    expected = np.stack([to_model_input(wide, 64)[0], to_model_input(tall, 64)[0]])
    torch.testing.assert_close(fake.calls[0]['pixels'], torch.from_numpy(expected))
    assert fake.calls[0]['pixels'][0, :, 40:, :].abs().max() < 0.01  # bottom half of the wide image: padding
    assert fake.calls[0]['max_new_tokens'] == 99  # grounding asked: a budget that fits a whole box text


@pytest.mark.parametrize('answer, expected', [
    ('[0.100, 0.200, 0.600, 0.450]', [20.0, 40.0, 120.0, 90.0]),  # x * 200, y * 200
    ('sure: [0.500, 0.250, 0.900, 0.700] is it', [100.0, 50.0, 180.0, 100.0]),  # y2 = 140 clipped to H = 100
    ('I cannot tell', None),  # no box in the text
    ('[0.100, 0.600, 0.300, 0.900]', None),  # y from 120 to 180: entirely in the padding below the image
    ('[0.600, 0.200, 0.100, 0.400]', None),  # inverted
    ('[0.100, 0.200, 1.600, 0.400]', None),  # not a decimal3 box (> 1)
])
def test_grounding_answers_come_back_in_image_pixels(monkeypatch, tmp_path, answer, expected):
    infer, fake = fake_inferencer(monkeypatch, tmp_path, {C2B.format('the red circle'): answer})
    out = infer.ground(wide_image(200, 100), '  the   red circle ')
    assert out == [dict(phrase='the red circle', bbox=expected, answer=answer)]


def test_tall_image_grounding(monkeypatch, tmp_path):
    infer, _ = fake_inferencer(monkeypatch, tmp_path, {C2B.format('x'): '[0.100, 0.200, 0.250, 0.900]'})
    # W=90, H=300, side 300: x 30..75, y 60..270
    assert infer.ground(wide_image(90, 300), ['x'])[0]['bbox'] == [30.0, 60.0, 75.0, 270.0]


def test_results_per_image_and_answers_in_order(monkeypatch, tmp_path):
    q1 = B2C.format('[0.250, 0.100, 0.750, 0.400]')
    infer, fake = fake_inferencer(monkeypatch, tmp_path, {q1: 'a box', GLOBAL: 'a picture'})
    out = infer(wide_image(200, 100), boxes=[50, 20, 150, 80], global_caption=True)
    assert out == [dict(width=200, height=100,
                        regions=[dict(bbox=[50.0, 20.0, 150.0, 80.0], caption='a box')],
                        caption='a picture')]
    assert infer.caption_regions(wide_image(200, 100), [[50, 20, 150, 80]]) == ['a box']
    assert infer.caption_image(wide_image(200, 100)) == 'a picture'
    assert fake.calls[-1]['max_new_tokens'] is None  # no grounding: the model's default length


def test_file_input_records_its_path(monkeypatch, tmp_path):
    from PIL import Image
    path = tmp_path / 'wide.png'
    Image.fromarray(wide_image(200, 100)).save(path)
    infer, fake = fake_inferencer(monkeypatch, tmp_path)
    out = infer([str(path), Image.open(path)], boxes=[[[0, 0, 10, 10]], [[0, 0, 10, 10]]], batch_size=1)
    assert out[0]['image'] == str(path) and 'image' not in out[1]
    assert len(fake.calls) == 2  # batch_size 1: one forward per image
    torch.testing.assert_close(fake.calls[0]['pixels'], fake.calls[1]['pixels'])
