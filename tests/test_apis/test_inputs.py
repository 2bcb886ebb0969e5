"""Bad input gets InferenceInputError naming what is wrong, before the model runs."""
import numpy as np
import pytest
from fake_chat_model import fake_inferencer
from PIL import Image
from stage1_assets import wide_image

from granvit_mm.apis import InferenceInputError, check_boxes, check_phrase, load_image, parse_box_text


def test_load_image_accepts_path_pil_and_array(tmp_path):
    arr = wide_image(30, 20)
    Image.fromarray(arr).save(tmp_path / 'a.png')
    np.testing.assert_array_equal(load_image(str(tmp_path / 'a.png')), arr)
    np.testing.assert_array_equal(load_image(tmp_path / 'a.png'), arr)  # os.PathLike
    np.testing.assert_array_equal(load_image(Image.fromarray(arr)), arr)
    np.testing.assert_array_equal(load_image(arr), arr)
    grey = load_image(Image.fromarray(arr[..., 0]))
    assert grey.shape == (20, 30, 3) and (grey[..., 0] == arr[..., 0]).all()
    rgba = np.dstack([arr, np.zeros((20, 30), np.uint8)])  # fully transparent: composited on white
    assert (load_image(Image.fromarray(rgba)) == 255).all()


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(wide_image(30, 20))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / 'r.jpg', exif=exif)
    assert load_image(str(tmp_path / 'r.jpg')).shape == (30, 20, 3)


@pytest.mark.parametrize('bad, match', [
    ('missing.png', 'image file not found'),
    ('notes.txt', 'is not an image'),
    (np.zeros((10, 10), np.uint8), 'HxWx3'),
    (np.zeros((10, 10, 4), np.uint8), 'HxWx3'),
    (np.zeros((10, 10, 3), np.float32), 'uint8'),
    (np.zeros((0, 10, 3), np.uint8), 'empty'),
    (12, 'file path, a PIL image or an HxWx3'),
])
def test_bad_images(tmp_path, bad, match):
    (tmp_path / 'notes.txt').write_text('not an image at all')
    if isinstance(bad, str):
        bad = str(tmp_path / bad)
    with pytest.raises(InferenceInputError, match=match):
        load_image(bad)


def test_pixel_limit_checked_on_the_header(tmp_path, monkeypatch):
    Image.new('RGB', (3000, 2000)).save(tmp_path / 'big.png')
    import granvit_mm.datasets.transforms.loading as loading

    def never(*args, **kwargs):
        raise AssertionError('decoded an image over the limit')

    monkeypatch.setattr(loading, 'decode_rgb', never)
    with pytest.raises(InferenceInputError, match='3000x2000 = 6000000 pixels, over the limit of 1000000'):
        load_image(str(tmp_path / 'big.png'), max_pixels=1_000_000)
    with pytest.raises(InferenceInputError, match='over the limit'):
        load_image(np.zeros((2000, 1000, 3), np.uint8), max_pixels=1_000_000)


@pytest.mark.parametrize('boxes, match', [
    ([10, 10, 10, 20], 'zero-size or inverted'),
    ([30, 10, 20, 20], 'zero-size or inverted'),
    ([[0, 0, 5, 5], [0, 0, 201, 50]], r'box 1 \[0, 0, 201, 50\] is outside the 200x100 image'),
    ([-1, 0, 5, 5], 'outside'),
    ([0, 0, 5, float('nan')], 'non-finite'),
    ([0, 0, 5], '4 numbers'),
    ('abc', 'numbers'),
])
def test_bad_boxes(boxes, match):
    with pytest.raises(InferenceInputError, match=match):
        check_boxes(boxes, 200, 100)


def test_good_boxes_and_phrases():
    np.testing.assert_array_equal(check_boxes([0, 0, 200, 100], 200, 100), [[0, 0, 200, 100]])
    assert check_boxes([[1, 2, 3, 4], [5, 6, 7, 8]], 200, 100).shape == (2, 4)
    assert check_phrase('  a  red\ncircle ') == 'a red circle'
    assert parse_box_text('[1, 2.5, 3 4]') == [1.0, 2.5, 3.0, 4.0]
    for bad in ('', '   ', None, 'x' * 1001):
        with pytest.raises(InferenceInputError):
            check_phrase(bad)
    for bad in ('1, 2, 3', 'a, b, c, d'):
        with pytest.raises(InferenceInputError, match='4 numbers'):
            parse_box_text(bad)


@pytest.mark.parametrize('kwargs, match', [
    (dict(boxes=[0, 0, 300, 50]), 'outside the 200x100 image'),
    (dict(phrases=['ok', '  ']), 'phrase to ground is empty'),
    (dict(), 'nothing to ask'),
])
def test_inferencer_checks_everything_before_running(monkeypatch, tmp_path, kwargs, match):
    infer, fake = fake_inferencer(monkeypatch, tmp_path)
    with pytest.raises(InferenceInputError, match=match):
        infer([wide_image(20, 20), wide_image(200, 100)],
              **{k: [[0, 0, 5, 5] if k == 'boxes' else 'fine', v] for k, v in kwargs.items()})
    assert fake.calls == []  # the first, valid, image was not run either


def test_inferencer_per_image_lists_and_pixel_limit(monkeypatch, tmp_path):
    infer, fake = fake_inferencer(monkeypatch, tmp_path, max_pixels=100)
    with pytest.raises(InferenceInputError, match='over the limit of 100 pixels'):
        infer(wide_image(20, 20), global_caption=True)
    with pytest.raises(InferenceInputError, match='list of 2 entries'):
        infer([wide_image(5, 5), wide_image(5, 5)], boxes=[[0, 0, 1, 1]])
    infer([wide_image(5, 5), wide_image(5, 5)], phrases='same phrase for both', batch_size=2)  # one for all
    assert [len(q) for q in fake.calls[0]['questions']] == [1, 1]
