import pytest

from granvit_mm.toy.gran_synth import generate


@pytest.fixture(scope='session')
def synth_dir(tmp_path_factory):
    """A tiny GranSynth (12 train / 4 val images, 96 px), generated once per session."""
    out = str(tmp_path_factory.mktemp('gran_synth'))
    generate(out, num_train=12, num_val=4, image_size=96, seed=3)
    return out
