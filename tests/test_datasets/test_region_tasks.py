import numpy as np
import pytest

from granvit_mm.core.prompts import BBOX2CAPTION_PROMPT, CAPTION2BBOX_PROMPT, GLOBAL_CAPTION_PROMPT
from granvit_mm.datasets.region_tasks import (build_tasks, check_task_mix, draw_count, groundable_regions,
                                              pick_distill_regions, sample_task_specs)

CAPS = ['a red circle', 'a blue square', 'the sign', 'The sign', 'a green cross', 'a tree']


def rng(*key):
    return np.random.default_rng(list(key))


def test_draw_count_fraction():
    draws = [draw_count(2.25, rng(0, i)) for i in range(4000)]
    assert set(draws) == {2, 3}
    assert abs(np.mean(draws) - 2.25) < 0.03
    assert draw_count(4, rng(0)) == 4 and draw_count(0, rng(0)) == 0


def test_check_task_mix():
    with pytest.raises(ValueError):
        check_task_mix(dict(bbox2text=1))
    with pytest.raises(ValueError):
        check_task_mix(dict(bbox2caption=-1))


def test_stage1_specs_deterministic_and_distinct():
    mix = dict(global_caption=1, bbox2caption=4)
    a = sample_task_specs(CAPS, True, mix, rng(0, 0, 5))
    b = sample_task_specs(CAPS, True, mix, rng(0, 0, 5))
    assert a == b
    assert a[0] == ('global_caption', -1)
    regions = [r for t, r in a if t == 'bbox2caption']
    assert len(regions) == 4 and len(set(regions)) == 4
    other = [sample_task_specs(CAPS, True, mix, rng(0, e, 5)) for e in range(1, 6)]
    assert any(o != a for o in other)  # the epoch changes the draw


def test_caption_turn_last_moves_only_the_caption_and_keeps_the_draw():
    """'last' is the same draw (same regions, same order) with the global caption after the region turns."""
    mix = dict(global_caption=1, caption2bbox=3)
    for i in range(10):
        first = sample_task_specs(CAPS, True, mix, rng(0, 0, i))
        last = sample_task_specs(CAPS, True, mix, rng(0, 0, i), caption_turn='last')
        assert first[0] == ('global_caption', -1) and last[-1] == ('global_caption', -1)
        assert last == first[1:] + first[:1]
    assert sample_task_specs(CAPS, False, mix, rng(3), caption_turn='last') == \
        sample_task_specs(CAPS, False, mix, rng(3))  # no caption: nothing moves
    with pytest.raises(ValueError, match='caption_turn'):
        sample_task_specs(CAPS, True, mix, rng(0), caption_turn='middle')


def test_no_global_caption_when_absent_and_k_capped():
    specs = sample_task_specs(CAPS[:2], False, dict(global_caption=1, bbox2caption=5), rng(1))
    assert [t for t, _ in specs] == ['bbox2caption'] * 2


def test_caption2bbox_only_unique_captions():
    assert groundable_regions(CAPS) == [0, 1, 4, 5]
    for i in range(20):
        specs = sample_task_specs(CAPS, True, dict(caption2bbox=6), rng(i))
        assert sorted(r for _, r in specs) == [0, 1, 4, 5]
    specs = sample_task_specs(CAPS, True, dict(caption2bbox=6), rng(0), unique_grounding=False)
    assert len(specs) == 6


def test_mode_first():
    specs = sample_task_specs(CAPS, True, dict(bbox2caption=3), rng(9), mode='first')
    assert specs == [('bbox2caption', 0), ('bbox2caption', 1), ('bbox2caption', 2)]


def test_distill_regions_tasks_first_then_others():
    specs = [('global_caption', -1), ('bbox2caption', 4), ('bbox2caption', 1)]
    d = pick_distill_regions(specs, 6, 4, rng(0))
    assert d[:2] == [4, 1] and len(d) == 4 and len(set(d)) == 4
    assert pick_distill_regions(specs, 6, 1, rng(0)) == [4]
    assert pick_distill_regions([('global_caption', -1)], 0, 4, rng(0)) == []


def test_build_tasks_uses_paper_prompts_and_box_text():
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1.0, 1.0]], np.float32)
    specs = [('global_caption', -1), ('bbox2caption', 0), ('caption2bbox', 1)]
    t = build_tasks(specs, boxes, ['a red circle', 'a tree'], 'a scene', 'decimal3')
    assert t[0] == dict(
        task='global_caption', question=GLOBAL_CAPTION_PROMPT, answer='a scene', box=None, region=-1)
    assert t[1]['question'] == BBOX2CAPTION_PROMPT.format(bbox='[0.100, 0.200, 0.300, 0.400]')
    assert t[1]['answer'] == 'a red circle' and t[1]['region'] == 0
    assert t[2]['question'] == CAPTION2BBOX_PROMPT.format(caption='a tree')
    assert t[2]['answer'] == '[0.500, 0.500, 1.000, 1.000]'
    t999 = build_tasks(specs[2:], boxes, ['a', 'a tree'], None, 'int999')
    assert t999[0]['answer'] == '[500, 500, 999, 999]'
