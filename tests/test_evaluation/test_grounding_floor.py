"""The Caption2Bbox floors on hand-computed cases, and the tool on a written Gran file."""
import json

import numpy as np
import pytest
from repo_tools import load_tool

from granvit_mm.evaluation.grounding_floor import (constant_box_scores, fit_constant_box, normalised_regions,
                                                   pairwise_iou, random_object_scores)


def _rec(w, h, *boxes, kinds=None):
    kinds = kinds or ['object'] * len(boxes)
    return dict(image='x.png', width=w, height=h, source='t', caption=None,
                regions=[dict(bbox=list(b), caption=f'r{i}', kind=k) for i,
                         (b, k) in enumerate(zip(boxes, kinds))])


def test_pairwise_iou_by_hand():
    iou = pairwise_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0]])


def test_boxes_are_normalised_to_the_padded_square():
    # 200 wide, 100 high: the square side is 200, so y is divided by 200 too
    (rec, ) = normalised_regions([_rec(200, 100, [20, 10, 120, 60])])
    np.testing.assert_allclose(rec['boxes'], [[0.1, 0.05, 0.6, 0.3]])


def test_constant_box_is_the_train_box_that_hits_most():
    train = normalised_regions([_rec(100, 100, [0, 0, 50, 50]), _rec(100, 100, [0, 0, 50, 50]),
                                _rec(100, 100, [50, 50, 100, 100])])
    np.testing.assert_allclose(fit_constant_box(train), [0, 0, 0.5, 0.5])
    val = normalised_regions([_rec(100, 100, [0, 0, 50, 50], [50, 50, 100, 100], kinds=['object', 'text'])])
    s = constant_box_scores([0, 0, 0.5, 0.5], val)
    assert s['acc_iou0.5'] == 50.0 and s['miou'] == 50.0 and s['num'] == 2
    assert s['object/acc_iou0.5'] == 100.0 and s['text/acc_iou0.5'] == 0.0


def test_random_object_oracle_expectation():
    # two disjoint regions: each question is hit with probability 1/2; a lone region always
    val = normalised_regions([_rec(100, 100, [0, 0, 50, 50], [50, 50, 100, 100]),
                              _rec(100, 100, [0, 0, 10, 10])])
    s = random_object_scores(val)
    assert s['acc_iou0.5'] == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)
    assert s['miou'] == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)


def test_tool_writes_scores(tmp_path):
    ann = tmp_path / 'annotations'
    ann.mkdir()
    (ann / 'train.jsonl').write_text(json.dumps(_rec(100, 100, [0, 0, 50, 50])) + '\n')
    (ann / 'val.jsonl').write_text(json.dumps(_rec(100, 100, [0, 0, 50, 50], [50, 50, 100, 100])) + '\n')
    tool = load_tool('tools/analysis_tools/grounding_floor.py')
    out = tool.main(['--data-root', str(tmp_path), '--train', 'annotations/train.jsonl',
                     '--val', 'annotations/val.jsonl', '--out', str(tmp_path / 'floor.json')])
    assert out['constant_acc']['acc_iou0.5'] == 50.0 and out['random_object']['acc_iou0.5'] == 50.0
    written = json.loads((tmp_path / 'floor.json').read_text())
    assert written['constant_acc']['box'] == written['constant_miou']['box'] == '[0.000, 0.000, 0.500, 0.500]'


def test_constant_box_for_mean_iou_differs_from_the_one_for_accuracy():
    # the corner box hits 2 of 7 (its copies); the central one hits only itself but overlaps the four boxes
    # shifted by 17 px at IoU 0.49 each, so it has the highest mean IoU
    corner = [[0, 0, 10, 10]] * 2
    centre = [[25, 25, 75, 75]]
    shifted = [[42, 25, 92, 75], [8, 25, 58, 75], [25, 42, 75, 92], [25, 8, 75, 58]]
    train = normalised_regions([_rec(100, 100, *corner, *centre, *shifted)])
    np.testing.assert_allclose(fit_constant_box(train, criterion='acc'), [0, 0, 0.1, 0.1])
    np.testing.assert_allclose(fit_constant_box(train, criterion='miou'), [0.25, 0.25, 0.75, 0.75])
    with pytest.raises(ValueError, match='criterion'):
        fit_constant_box(train, criterion='f1')
