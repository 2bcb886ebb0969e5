"""Shared assets of the data-engine tests: a small GranSynth and a stage-1 checkpoint made in seconds (the
captioner; tests/test_apis/stage1_assets.py).

With ``GRANVIT_TEST_ASSETS=<folder>`` they are built once into that folder and reused by later sessions: set
only by tools/analysis_tools/mutation_test.py for groups whose mutated files do not build them, where each
mutant is a new pytest session that would otherwise spend seconds rebuilding the same assets
(docs/testing.md). Without it (CI) each session builds its own, as before.
``GRANVIT_FAST_TESTS_FIRST=<mutmut's stats file>`` (also set only by mutation_test.py) runs the selected
tests fastest first.
"""
import json
import os
import os.path as osp
import shutil
import sys

import pytest

sys.path.append(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_apis'))


def _asset(tmp_path_factory, name: str, build):
    """``build(folder)`` (-> a JSON-able value naming paths inside it) into a fresh temporary folder, or once
    into the cache, whose ``.built`` file (written last) keeps the value."""
    cache = os.environ.get('GRANVIT_TEST_ASSETS')
    if not cache:
        return build(str(tmp_path_factory.mktemp(name)))
    out = osp.join(cache, name)
    done = osp.join(out, '.built')
    if not osp.exists(done):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        value = build(out)
        with open(done, 'w') as f:
            json.dump(value, f)
    with open(done) as f:
        return json.load(f)


def pytest_collection_modifyitems(config, items):
    """Under mutation testing, the fastest tests first (mutmut passes a mutant's tests in no set order, with
    ``-x``): a mutant that a unit test kills then costs that test, not an engine run before it."""
    stats = os.environ.get('GRANVIT_FAST_TESTS_FIRST')
    if not stats or not osp.isfile(stats):
        return
    with open(stats, encoding='utf-8') as f:
        durations = json.load(f).get('duration_by_test', {})
    items.sort(key=lambda item: durations.get(item.nodeid, float('inf')))


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate

    def build(root):
        generate(root, num_train=4, num_val=20, ocr_fraction=0.2)
        return root
    return _asset(tmp_path_factory, 'engine_synth', build)


@pytest.fixture(scope='session')
def stage1(tmp_path_factory):
    from stage1_assets import make_stage1_checkpoint
    if not os.environ.get('GRANVIT_TEST_ASSETS'):
        return make_stage1_checkpoint(str(tmp_path_factory.mktemp('engine_stage1')))

    def build(base_dir):
        built = make_stage1_checkpoint(base_dir)
        return {k: v for k, v in built.items() if k != 'state_dict'}
    paths = _asset(tmp_path_factory, 'engine_stage1', build)
    import torch
    state_dict = torch.load(paths['checkpoint'], map_location='cpu', weights_only=True)['state_dict']
    return dict(paths, state_dict=state_dict)
