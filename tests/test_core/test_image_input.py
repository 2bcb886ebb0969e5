"""The one image pre-processing equals what stage 1's pipeline + data preprocessor feed the ViT."""
import numpy as np
import pytest
import torch

from granvit_mm.core.image_input import PIXEL_MEAN, to_model_input


def test_equals_stage1_pipeline_and_preprocessor():
    from granvit_mm.datasets.transforms import GranSquareResize
    from granvit_mm.models.algorithms.granvit_pretrainer import DEFAULT_PREPROCESSOR
    from granvit_mm.registry import MODELS
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 90, 3), dtype=np.uint8)  # non-square, odd size
    x, geom = to_model_input(img, 64)
    stage1 = GranSquareResize(size=64)(dict(img=img))['img']
    pre = MODELS.build(DEFAULT_PREPROCESSOR)
    ref = pre(dict(inputs=[torch.from_numpy(stage1.transpose(2, 0, 1).copy())]), training=False)['inputs'][0]
    torch.testing.assert_close(torch.from_numpy(x), ref, rtol=0, atol=1e-6)
    assert (geom.height, geom.width, geom.size) == (37, 90, 64)
    # the padded bottom rows hold the pad colour, which normalises to about 0
    assert abs(float(x[:, -1].mean())) < 0.01 and PIXEL_MEAN[0] == 127.5


def _by_hand(img, size):
    """The documented steps written out: pad right/bottom with 127 to a square, resize with PIL (area, i.e.
    ``BOX``, when shrinking, bicubic when enlarging), map uint8 [0, 255] to [-1, 1] (SigLIP's mean = std =
    0.5), HWC -> CHW."""
    from PIL import Image
    h, w = img.shape[:2]
    side = max(h, w)
    square = np.pad(img, ((0, side - h), (0, side - w), (0, 0)), constant_values=127)
    resample = Image.Resampling.BOX if side > size else Image.Resampling.BICUBIC
    resized = np.asarray(Image.fromarray(square).resize((size, size), resample))
    return (resized.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


@pytest.mark.parametrize('shape, size', [((37, 90, 3), 64), ((30, 20, 3), 64), ((48, 48, 3), 32)])
def test_equals_the_documented_steps_by_hand(shape, size):
    """Teeth: the contract against an independent writing of it (pad side, pad colour, resize, constants)."""
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    x, geom = to_model_input(img, size)
    assert x.shape == (3, size, size) and x.dtype == np.float32
    np.testing.assert_allclose(x, _by_hand(img, size), rtol=0, atol=1e-6)
    assert geom.scale == size / max(shape[:2])


@pytest.mark.parametrize('bad', [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match='RGB uint8'):
        to_model_input(bad, 16)
