import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_apis'))
from stage1_assets import make_stage1_checkpoint  # noqa: E402


@pytest.fixture(scope='session')
def stage1_assets(tmp_path_factory):
    return make_stage1_checkpoint(str(tmp_path_factory.mktemp('stage1')))


@pytest.fixture(scope='session')
def demo_inferencer(stage1_assets):
    from granvit_mm.apis import GranViTInferencer
    return GranViTInferencer(stage1_assets['config'], stage1_assets['checkpoint'],
                             llm_path=stage1_assets['llm_path'], max_pixels=1_000_000)


@pytest.fixture(scope='session')
def stage2_assets(tmp_path_factory, stage1_assets):
    """A stage-2 (XTuner) checkpoint made for the test (on the stage-1 test LLM), its config and its
    export."""
    from stage2_chat_assets import make_stage2_assets
    return make_stage2_assets(str(tmp_path_factory.mktemp('stage2')), llm=stage1_assets['llm_path'])


@pytest.fixture(scope='session')
def stage2_inferencer(stage2_assets):
    """The stage-2 checkpoint loaded with ``stage='auto'``."""
    from granvit_mm.apis import GranViTInferencer
    return GranViTInferencer(stage2_assets['config'], stage2_assets['checkpoint'], max_pixels=1_000_000)
