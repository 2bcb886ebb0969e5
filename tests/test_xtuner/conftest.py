"""Session-wide tiny stage-2 assets (see stage2_assets.py): built once, read by every stage-2 test (or once
across sessions under mutation testing: tests/asset_cache.py)."""
import os.path as osp

import pytest
from asset_cache import cached_asset
from stage2_assets import make_stage1_checkpoint, make_tiny_llm


@pytest.fixture(scope='session')
def tiny_llm_dir(tmp_path_factory):
    return cached_asset(tmp_path_factory, 'tiny_llm', make_tiny_llm)


@pytest.fixture(scope='session')
def stage1_ckpt(tmp_path_factory, tiny_llm_dir):
    return cached_asset(tmp_path_factory, 'stage1',
                        lambda d: make_stage1_checkpoint(osp.join(d, 'iter_1.pth'), tiny_llm_dir))


@pytest.fixture(scope='session')
def encoder_dir(tmp_path_factory, stage1_ckpt):
    from granvit_mm.xtuner.encoder import export_encoder

    def build(out):
        export_encoder(stage1_ckpt, out)
        return out
    return cached_asset(tmp_path_factory, 'hf_encoder', build)
