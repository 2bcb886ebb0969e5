import numpy as np

from granvit_mm.core.geometry import SquareGeometry, pad_to_square, square_resize


def test_pad_is_right_bottom_and_keeps_pixels():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    sq = pad_to_square(img, (7, 8, 9))
    assert sq.shape == (3, 3, 3)
    np.testing.assert_array_equal(sq[:2], img)
    np.testing.assert_array_equal(sq[2], [[7, 8, 9]] * 3)


def test_boxes_follow_the_pixels():
    # A white rectangle on a 200x100 (w x h) black image: after pad+resize to 64 it sits where to_input says.
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:150] = 255
    out, geom = square_resize(img, 64, (0, 0, 0))
    x1, y1, x2, y2 = geom.to_input(np.array([50, 20, 150, 60]))[0]
    np.testing.assert_allclose([x1, y1, x2, y2], [16.0, 6.4, 48.0, 19.2], rtol=1e-6)
    inside = out[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
    assert inside.min() > 200
    assert out[int(y2) + 2:, :].max() < 30  # below the box (and the padding) stays dark
    np.testing.assert_allclose(geom.to_normalized([[50, 20, 150, 60]]), [[0.25, 0.1, 0.75, 0.3]])


def test_normalized_round_trip_and_clip():
    geom = SquareGeometry(height=300, width=400, size=512)
    boxes = np.array([[10, 20, 390, 290]], np.float32)
    np.testing.assert_allclose(geom.from_normalized(geom.to_normalized(boxes)), boxes, rtol=1e-6)
    # A predicted box reaching into the padding is clipped to the image.
    np.testing.assert_allclose(geom.from_normalized([[0.5, 0.5, 1.0, 1.0]]), [[200, 200, 400, 300]])
