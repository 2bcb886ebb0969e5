"""tools/analysis_tools/caption_attributes.py: per-attribute caption accuracy, split by objects per image."""

import pytest
from repo_tools import load_tool


def _tool():
    return load_tool('tools/analysis_tools/caption_attributes.py')


def test_attribute_accuracy_counts_words_by_attribute_and_objects_per_image():
    rows = [
        dict(regions=[dict(caption='a small red solid circle', gt_caption='a small red solid circle')]),
        dict(regions=[dict(caption='a small red solid circle', gt_caption='a large blue solid circle'),
                      dict(caption='gibberish', gt_caption='a small red striped square')]),
        dict(regions=[dict(caption='menu', gt_caption='menu'), dict(caption='a small red solid circle',
                                                                    gt_caption='bank')]),
    ]
    acc = _tool().attribute_accuracy(rows)
    assert acc['objects=1'] == dict(size=100.0, colour=100.0, texture=100.0, shape=100.0, n=1)
    # a caption that does not parse is wrong on every attribute
    assert acc['objects=2'] == dict(size=0.0, colour=0.0, texture=50.0, shape=50.0, n=2)
    assert acc['all']['n'] == 3 and acc['all']['shape'] == pytest.approx(200 / 3)
    assert acc['ocr'] == dict(exact=50.0, n=2)
