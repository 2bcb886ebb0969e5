import numpy as np
import pytest

from granvit_mm.core import prompts
from granvit_mm.core.box_text import BOX_STYLES, box_quantum, format_box, parse_box


def test_default_style_matches_the_documented_text():
    assert format_box([0.125, 0.3, 0.4821, 0.911]) == '[0.125, 0.300, 0.482, 0.911]'
    assert format_box([0.125, 0.3, 0.482, 0.911], 'int999') == '[125, 300, 482, 910]'
    assert format_box([0.125, 0.3, 0.482, 0.911], 'xtuner_refcoco') == '{<12><30><48><90>}'


@pytest.mark.parametrize('style', BOX_STYLES)
def test_round_trip_within_one_quantum(style):
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = np.sort(rng.random(4).reshape(2, 2), axis=0).T.reshape(-1)[[0, 2, 1, 3]]
        back = parse_box('The box is ' + format_box(box, style) + ' I think.', style)
        assert back is not None
        np.testing.assert_allclose(back, box, atol=box_quantum(style) + 1e-9)


@pytest.mark.parametrize('text',
                         ['no box here', '[0.1, 0.2, 0.3]', '[1.5, 0.2, 0.3, 0.4]', '{<1><2><3>}', ''])
def test_unparseable_answers_give_none(text):
    assert parse_box(text) is None


def test_bad_boxes_and_styles_are_refused():
    with pytest.raises(ValueError, match='non-finite'):
        format_box([0.1, float('nan'), 0.2, 0.3])
    with pytest.raises(ValueError, match='4 numbers'):
        format_box([0.1, 0.2])
    with pytest.raises(ValueError, match='unknown box style'):
        format_box([0, 0, 1, 1], 'xywh')


def test_prompts_are_the_papers_words():
    assert prompts.global_caption_question() == \
        'Describe in detail what is shown in the image in one paragraph'
    assert prompts.bbox2caption_question([0.125, 0.3, 0.482, 0.911]) == (
        'Describe the content contained within the normalized bounding box coordinates '
        '[0.125, 0.300, 0.482, 0.911] in no more than 10 words.')
    assert prompts.caption2bbox_question('a red cube') == (
        'Please provide the bounding box coordinate of the region this sentence describes: a red cube')


def test_coordinates_outside_the_square_are_clipped_to_it():
    box = [-0.2, 0.5, 1.3, 1.0]
    assert format_box(box) == '[0.000, 0.500, 1.000, 1.000]'
    assert format_box(box, 'int999') == '[0, 500, 999, 999]'
    assert format_box(box, 'xtuner_refcoco') == '{<0><50><99><99>}'


def test_quantum_is_half_a_step_of_each_style():
    """The tolerance the round-trip test and the metrics allow: exactly half the last digit's step."""
    assert box_quantum() == box_quantum('decimal3') == 0.0005
    assert box_quantum('int999') == 0.5 / 999
    assert box_quantum('xtuner_refcoco') == 0.5 / 99
    # and it is tight: a coordinate half a step from a grid point rounds by exactly the quantum
    assert abs(parse_box(format_box([0.0015, 0, 1, 1]))[0] - 0.0015) == pytest.approx(box_quantum())
    with pytest.raises(ValueError, match='unknown box style'):
        box_quantum('xywh')


def test_prompts_write_the_box_in_the_given_style():
    box = [0.125, 0.3, 0.482, 0.911]
    assert prompts.bbox2caption_question(box, 'int999') == (
        'Describe the content contained within the normalized bounding box coordinates '
        '[125, 300, 482, 910] in no more than 10 words.')
    assert prompts.caption2bbox_answer(box) == '[0.125, 0.300, 0.482, 0.911]'
    assert prompts.caption2bbox_answer(box, 'xtuner_refcoco') == '{<12><30><48><90>}'
    assert prompts.TASKS == ('global_caption', 'bbox2caption', 'caption2bbox')
