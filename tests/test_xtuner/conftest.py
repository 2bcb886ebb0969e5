"""Session-wide tiny stage-2 assets (see stage2_assets.py): built once, read by every stage-2 test."""
import pytest
from stage2_assets import make_stage1_checkpoint, make_tiny_llm


@pytest.fixture(scope='session')
def tiny_llm_dir(tmp_path_factory):
    return make_tiny_llm(str(tmp_path_factory.mktemp('tiny_llm')))


@pytest.fixture(scope='session')
def stage1_ckpt(tmp_path_factory, tiny_llm_dir):
    return make_stage1_checkpoint(str(tmp_path_factory.mktemp('stage1') / 'iter_1.pth'), tiny_llm_dir)


@pytest.fixture(scope='session')
def encoder_dir(tmp_path_factory, stage1_ckpt):
    from granvit_mm.xtuner.encoder import export_encoder
    out = str(tmp_path_factory.mktemp('hf_encoder'))
    export_encoder(stage1_ckpt, out)
    return out
