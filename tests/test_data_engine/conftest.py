"""Shared assets of the data-engine tests: a small GranSynth and a stage-1 checkpoint made in seconds (the
captioner; tests/test_apis/stage1_assets.py)."""
import os.path as osp
import sys

import pytest

sys.path.append(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_apis'))


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    root = str(tmp_path_factory.mktemp('engine_synth'))
    generate(root, num_train=4, num_val=20, ocr_fraction=0.2)
    return root


@pytest.fixture(scope='session')
def stage1(tmp_path_factory):
    from stage1_assets import make_stage1_checkpoint
    return make_stage1_checkpoint(str(tmp_path_factory.mktemp('engine_stage1')))
