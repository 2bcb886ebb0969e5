"""Shared assets of the data-engine tests: a small GranSynth and a stage-1 checkpoint made in seconds (the
captioner; tests/test_apis/stage1_assets.py); once across sessions under mutation testing
(tests/asset_cache.py).
"""
import os
import os.path as osp
import sys

import pytest
from asset_cache import cached_asset

sys.path.append(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_apis'))


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate

    def build(root):
        generate(root, num_train=4, num_val=20, ocr_fraction=0.2)
        return root
    return cached_asset(tmp_path_factory, 'engine_synth', build)


@pytest.fixture(scope='session')
def stage1(tmp_path_factory):
    from stage1_assets import make_stage1_checkpoint
    if not os.environ.get('GRANVIT_TEST_ASSETS'):
        return make_stage1_checkpoint(str(tmp_path_factory.mktemp('engine_stage1')))

    def build(base_dir):
        built = make_stage1_checkpoint(base_dir)
        return {k: v for k, v in built.items() if k != 'state_dict'}
    paths = cached_asset(tmp_path_factory, 'engine_stage1', build)
    import torch
    state_dict = torch.load(paths['checkpoint'], map_location='cpu', weights_only=True)['state_dict']
    return dict(paths, state_dict=state_dict)
