"""Session-wide tiny stage-2 assets (see stage2_assets.py): built once, read by every stage-2 test.

With ``GRANVIT_TEST_ASSETS=<folder>`` they are built once into that folder and reused by later sessions: set
only by tools/analysis_tools/mutation_test.py for groups whose mutated files do not build them, where each
mutant is a new pytest session that would otherwise spend seconds rebuilding the same assets
(docs/testing.md).
"""
import os
import os.path as osp
import shutil

import pytest
from stage2_assets import make_stage1_checkpoint, make_tiny_llm


def _asset(tmp_path_factory, name: str, build) -> str:
    """``build(folder)`` (-> a path inside it) into a fresh temporary folder, or once into the cache."""
    cache = os.environ.get('GRANVIT_TEST_ASSETS')
    if not cache:
        return build(str(tmp_path_factory.mktemp(name)))
    out = osp.join(cache, name)
    done = osp.join(out, '.built')  # written last: holds the built path, relative to ``out``
    if not osp.exists(done):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        built = osp.relpath(build(out), out)
        with open(done, 'w') as f:
            f.write(built)
    with open(done) as f:
        return osp.normpath(osp.join(out, f.read()))


@pytest.fixture(scope='session')
def tiny_llm_dir(tmp_path_factory):
    return _asset(tmp_path_factory, 'tiny_llm', make_tiny_llm)


@pytest.fixture(scope='session')
def stage1_ckpt(tmp_path_factory, tiny_llm_dir):
    return _asset(tmp_path_factory, 'stage1',
                  lambda d: make_stage1_checkpoint(osp.join(d, 'iter_1.pth'), tiny_llm_dir))


@pytest.fixture(scope='session')
def encoder_dir(tmp_path_factory, stage1_ckpt):
    from granvit_mm.xtuner.encoder import export_encoder

    def build(out):
        export_encoder(stage1_ckpt, out)
        return out
    return _asset(tmp_path_factory, 'hf_encoder', build)
