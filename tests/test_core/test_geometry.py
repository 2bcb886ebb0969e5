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


def test_box_maps_take_many_boxes_and_give_float32():
    """Box arrays of any number type and count come back as (N, 4) float32 (what the datasets and the
    metrics hold), the same numbers as in float64."""
    geom = SquareGeometry(height=300, width=400, size=512)
    boxes = [[0, 30, 200, 300], [40, 0, 400, 150]]
    for given in [boxes, np.array(boxes, np.int64), np.array(boxes, np.float64)]:
        for mapped, want in [(geom.to_input(given), np.array(boxes) * 512 / 400),
                             (geom.to_normalized(given), np.array(boxes) / 400),
                             (geom.from_normalized(np.array(given) / 400), np.array(boxes))]:
            assert mapped.dtype == np.float32 and mapped.shape == (2, 4)
            np.testing.assert_allclose(mapped, want, rtol=1e-6, atol=1e-4)
    assert geom.from_normalized([0.1, 0.2, 0.3, 0.4]).shape == (1, 4)  # one flat box


def test_from_normalized_clips_each_axis_to_its_own_side():
    tall = SquareGeometry(height=400, width=100, size=64)  # padding on the right: x beyond 0.25 is padding
    np.testing.assert_allclose(tall.from_normalized([[-0.1, -0.05, 0.5, 1.2], [0, 0, 0.1, 0.2]]),
                               [[0, 0, 100, 400], [0, 0, 40, 80]])
    wide = SquareGeometry(height=100, width=400, size=64)
    np.testing.assert_allclose(wide.from_normalized([[-0.1, -0.05, 1.2, 0.5], [0, 0, 0.1, 0.2]]),
                               [[0, 0, 400, 100], [0, 0, 40, 80]])


def test_square_input_of_the_model_size_is_a_copy():
    img = np.full((16, 16, 3), 9, np.uint8)
    out, geom = square_resize(img, 16)
    assert out is not img and not np.shares_memory(out, img)
    np.testing.assert_array_equal(out, img)
    out[...] = 0  # the caller may write into it
    assert img.min() == 9 and geom.scale == 1.0
    wide = np.full((8, 16, 3), 9, np.uint8)  # padded to the size: a new array already
    out, _ = square_resize(wide, 16, (1, 2, 3))
    np.testing.assert_array_equal(out[:8], wide)
    np.testing.assert_array_equal(out[8:], np.broadcast_to([1, 2, 3], (8, 16, 3)))
