import pytest
from stage1_assets import make_stage1_checkpoint


@pytest.fixture(scope='session')
def stage1(tmp_path_factory):
    return make_stage1_checkpoint(str(tmp_path_factory.mktemp('stage1')))


@pytest.fixture(scope='session')
def inferencer(stage1):
    from granvit_mm.apis import GranViTInferencer
    return GranViTInferencer(stage1['config'], stage1['checkpoint'], llm_path=stage1['llm_path'])
