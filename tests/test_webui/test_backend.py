"""The demo's actions without a browser: readable messages for every bad input, the server never crashes."""
import logging

import numpy as np
import pytest
from PIL import Image

from granvit_mm.webui import DemoBackend


@pytest.fixture(scope='module')
def backend(demo_inferencer):
    return DemoBackend(demo_inferencer, view_size=64)


@pytest.fixture
def image_file(tmp_path):
    from stage1_assets import synth_images
    img, _ = synth_images(2)[1]  # 128x104
    path = tmp_path / 'scene.png'
    img.save(path)
    return str(path)


def test_load_and_ask(backend, image_file):
    image, status = backend.load(image_file)
    assert image.shape == (104, 128, 3) and status.startswith('Loaded a 128x104 image')
    (drawn, text), status = backend.caption(image, '45, 17, 105, 77')
    expected = backend.inferencer.caption_regions(image, [[45, 17, 105, 77]])[0]
    assert status == 'ok' and text == f'[45, 17, 105, 77]: {expected}'
    assert tuple(drawn[47, 45]) == (30, 144, 255) and drawn.shape == image.shape
    (drawn, text), _ = backend.ground(image, 'a red circle')
    g = backend.inferencer.ground(image, 'a red circle')[0]
    assert text.startswith('"a red circle" ')
    assert (g['bbox'] is None) == ('no box in the answer' in text)
    caption, _ = backend.global_caption(image)
    assert caption == backend.inferencer.caption_image(image)
    view, _ = backend.features(image)
    assert view.shape == (22 + 52, 64 + 8 + 64, 3)  # image | features, 128x104 scaled to 64 wide


def test_two_clicks_make_a_box(backend, image_file):
    image, _ = backend.load(image_file)
    (marked, corner, box), status = backend.click(image, None, [100, 70])
    assert corner == (100.0, 70.0) and box is None and 'opposite corner' in status
    assert (marked != image).any()
    (preview, corner, box), status = backend.click(image, corner, [20, 10])
    assert corner is None and box == '20, 10, 100, 70' and 'Caption box' in status
    _, status = backend.click(image, (5.0, 5.0), [5, 30])  # zero width
    assert status.startswith('Error: box 0 [5, 5, 5, 30] is zero-size or inverted')


@pytest.mark.parametrize('action, args, message', [
    ('load', (None,), 'Error: no file uploaded'),
    ('caption', (None, '1, 2, 3, 4'), 'Error: upload an image first'),
    ('caption', ('IMAGE', '0, 0, 500, 50'), 'Error: box 0 [0, 0, 500, 50] is outside the 128x104 image'),
    ('caption', ('IMAGE', '10, 10, 20'), 'Error: a box is 4 numbers'),
    ('caption', ('IMAGE', '30, 10, 20, 40'), 'Error: box 0 [30, 10, 20, 40] is zero-size or inverted'),
    ('ground', ('IMAGE', '   '), 'Error: the phrase to ground is empty'),
    ('ground', ('IMAGE', None), 'Error: the phrase to ground is empty'),
    ('features', (None,), 'Error: upload an image first'),
])
def test_bad_inputs_give_readable_messages(backend, image_file, action, args, message):
    image, _ = backend.load(image_file)
    args = tuple(image if a == 'IMAGE' else a for a in args)
    out, status = getattr(backend, action)(*args)
    assert out is None and status.startswith(message)


def test_bad_files(backend, tmp_path):
    (tmp_path / 'notes.txt').write_text('hello')
    _, status = backend.load(str(tmp_path / 'notes.txt'))
    assert status.startswith('Error: ') and 'is not an image Pillow can read' in status
    Image.new('RGB', (1200, 1000)).save(tmp_path / 'big.png')
    _, status = backend.load(str(tmp_path / 'big.png'))
    assert 'over the limit of 1000000 pixels' in status


def test_a_bug_is_logged_and_reported_in_one_line(backend, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError('secret internals')

    monkeypatch.setattr(backend, 'inferencer', type('Broken', (), {'__call__': broken, 'load': broken})())
    with caplog.at_level(logging.ERROR, logger='granvit.webui'):
        out, status = backend.caption(np.zeros((10, 10, 3), np.uint8), '1, 1, 5, 5')
    assert out is None and status == 'Internal error (RuntimeError); the server log has the details.'
    assert 'secret internals' not in status and 'secret internals' in caplog.text
