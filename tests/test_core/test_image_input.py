"""The one image pre-processing equals what stage 1's pipeline + data preprocessor feed the ViT."""
import numpy as np
import pytest
import torch

from granvit_mm.core.image_input import PIXEL_MEAN, as_rgb_uint8, image_list, to_model_input


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


def test_rejection_names_what_it_got():
    with pytest.raises(ValueError) as err:
        to_model_input(np.zeros((8, 8, 4), np.uint8), 16)
    assert str(err.value) == 'expected an RGB uint8 HxWx3 image, got shape (8, 8, 4) dtype uint8'


def _rgb(h=5, w=7):
    return np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_as_rgb_uint8_reads_the_ways_transformers_processors_do(tmp_path):
    from PIL import Image
    rgb = _rgb()
    path = str(tmp_path / 'im.png')
    Image.fromarray(rgb).save(path)
    for image in [rgb, path, path.encode(), Image.fromarray(rgb), Image.fromarray(rgb).convert('RGBA'),
                  rgb.transpose(2, 0, 1), torch.from_numpy(rgb.transpose(2, 0, 1).copy()),
                  np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=-1),  # alpha dropped
                  np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=-1).transpose(2, 0, 1),
                  rgb.astype(np.float32) / 255.0, rgb.astype(np.float64), rgb.astype(np.int64)]:
        out = as_rgb_uint8(image)
        assert out.dtype == np.uint8 and out.flags['C_CONTIGUOUS']
        np.testing.assert_array_equal(out, rgb)
    # an HxWx3 array whose first axis is also 3 long stays HxWxC
    np.testing.assert_array_equal(as_rgb_uint8(rgb[:3, :3]), rgb[:3, :3])


def test_as_rgb_uint8_grey_bool_and_value_ranges():
    from PIL import Image
    grey = np.array([[0, 100], [200, 255]], np.uint8)
    for image in [grey, grey[:, :, None], grey[None], Image.fromarray(grey, mode='L')]:
        np.testing.assert_array_equal(as_rgb_uint8(image), np.repeat(grey[:, :, None], 3, axis=-1))
    mask = np.array([[True, False]])
    np.testing.assert_array_equal(as_rgb_uint8(mask)[..., 0], [[255, 0]])
    # floats: [0, 1] is scaled (rounded to the nearest level), larger values are levels, clipped at 255
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0.2, 1.0]], np.float32))[..., 0], [[51, 255]])
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0.2, 1.4, 2.6, 300.0]]))[..., 0], [[0, 1, 3, 255]])
    # integers are levels even when they are all 0 or 1
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0, 1]], np.int64))[..., 0], [[0, 1]])
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[7, 999]], np.int32))[..., 0], [[7, 255]])
    assert as_rgb_uint8(np.zeros((0, 4, 3), np.float32)).shape == (0, 4, 3)


def test_as_rgb_uint8_refuses_normalised_pixels_and_non_images():
    with pytest.raises(ValueError) as err:
        as_rgb_uint8(np.array([[-0.5, 0.5]], np.float32))
    assert str(err.value) == ('got values below 0: pixel values are normalised here, not before; '
                              'give RGB uint8 or floats in [0, 1]')
    for bad in [np.zeros((8, 8, 7), np.uint8), np.zeros((2, 8, 8, 3), np.uint8), np.zeros(8, np.uint8)]:
        with pytest.raises(ValueError) as err:
            as_rgb_uint8(bad)
        assert str(err.value) == \
            f'expected an image (HxW, HxWx3, HxWx4 or 3xHxW), got shape {bad.shape}'


def test_image_list_flattens_batches_and_lists_in_order():
    from PIL import Image
    a, b, c = _rgb(), _rgb() + 1, _rgb() + 2
    pil = Image.fromarray(a)
    assert image_list(pil) == [pil]
    assert image_list('x.png') == ['x.png'] and image_list(b'x.png') == [b'x.png']
    for single in [a, a[..., 0], a.transpose(2, 0, 1)]:
        out = image_list(single)
        assert len(out) == 1 and out[0] is single
    for batch in [np.stack([a, b, c]), torch.from_numpy(np.stack([a, b, c])), [a, b, c], (a, [b, (c, )]),
                  [np.stack([a, b]), c]]:
        out = image_list(batch)
        assert len(out) == 3
        for got, want in zip(out, [a, b, c]):
            np.testing.assert_array_equal(np.asarray(got), want)
    assert image_list([]) == [] and image_list([pil, 'y.png']) == [pil, 'y.png']


def test_image_list_refuses_what_is_not_an_image():
    with pytest.raises(ValueError) as err:
        image_list(np.zeros((2, 3, 4, 5, 3), np.uint8))
    assert str(err.value) == ('cannot read an image from ndarray of shape (2, 3, 4, 5, 3): give a PIL image, '
                              'an HxWx3 / 3xHxW array, a path, or a batch or list of them')
    with pytest.raises(ValueError) as err:
        image_list(5)
    assert str(err.value) == ('cannot read an image from int: give a PIL image, an HxWx3 / 3xHxW array, '
                              'a path, or a batch or list of them')


def test_as_rgb_uint8_converts_every_pil_mode_and_grad_tensors(tmp_path):
    from PIL import Image
    rgb = _rgb()
    for mode in ['P', 'LA', 'CMYK', 'L', 'RGBA', 'I;16']:
        im = Image.fromarray(rgb).convert(mode) if mode != 'I;16' else \
            Image.fromarray((rgb[..., 0].astype(np.uint16) * 200)).convert('I;16')
        want = np.asarray(im.convert('RGB'))
        np.testing.assert_array_equal(as_rgb_uint8(im), want)
        if mode in ('P', 'L', 'RGBA'):
            path = str(tmp_path / f'{mode}.png')
            im.save(path)
            np.testing.assert_array_equal(as_rgb_uint8(path), want)
    grad = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1).requires_grad_()
    np.testing.assert_array_equal(as_rgb_uint8(grad), rgb)


def test_as_rgb_uint8_channel_axis_edge_cases():
    rgb = _rgb()
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=-1)
    for hwc in [rgb[:3], rgb[:4, :3], rgba[:3], rgba[:1]]:  # heights of 1, 3, 4: still HxWxC
        np.testing.assert_array_equal(as_rgb_uint8(hwc), hwc[..., :3])
    chw = rgb[:4].transpose(2, 0, 1)  # 3x4x7: a width of 7 tells it apart
    np.testing.assert_array_equal(as_rgb_uint8(chw), rgb[:4])
    mask = as_rgb_uint8(np.array([[True, False]]))
    assert mask.dtype == np.uint8 and mask.tolist() == [[[255] * 3, [0] * 3]]
    # floats up to 1 are [0, 1] images; above 1, they are levels (1.5 is not scaled)
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0.5, 1.5]]))[..., 0], [[0, 2]])
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0.5, 1.0]]))[..., 0], [[128, 255]])
