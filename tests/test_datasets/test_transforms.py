import numpy as np
import pytest
import torch
from PIL import Image

from granvit_mm.core.gran_record import BadRecordError
from granvit_mm.datasets.transforms import (GranRandomFlip, GranSquareResize, LoadGranImage, PackGranInputs,
                                            SampleRegionTasks)
from granvit_mm.datasets.transforms.geometry import swap_words
from granvit_mm.registry import TRANSFORMS
from granvit_mm.structures import GranDataSample


def info(path, w, h, boxes=((2, 3, 20, 25), ), caps=('a red square', ), **kw):
    d = dict(
        img_path=str(path),
        width=w,
        height=h,
        gt_bboxes=np.array(boxes, np.float32).reshape(-1, 4),
        region_captions=list(caps),
        region_kinds=['object'] * len(caps),
        caption='an image',
        source='t',
        sample_idx=0,
        epoch=0,
        shard='s.jsonl',
        line=7)
    d.update(kw)
    return d


def quadrant_image(w, h):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[...] = (0, 0, 255)
    arr[:h // 2, :w // 2] = (255, 0, 0)
    return Image.fromarray(arr)


def test_registered_in_granvit_scope():
    for name in ('LoadGranImage', 'SampleRegionTasks', 'GranSquareResize', 'GranRandomFlip',
                 'PackGranInputs'):
        assert TRANSFORMS.get(f'granvit.{name}') is not None


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / 'rot.jpg'
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed = raw rotated 90 degrees clockwise
    quadrant_image(40, 30).save(p, exif=exif, quality=95)
    out = LoadGranImage()(info(p, 30, 40))  # record made on the displayed image
    img = out['img']
    assert img.shape == (40, 30, 3) and img.dtype == np.uint8
    assert img[2, -3, 0] > 200 and img[2, 2, 2] > 200  # red moved to the top right


def test_exif_ignored_when_record_matches_raw_pixels(tmp_path):
    p = tmp_path / 'rot.jpg'
    exif = Image.Exif()
    exif[0x0112] = 6
    quadrant_image(40, 30).save(p, exif=exif, quality=95)
    img = LoadGranImage()(info(p, 40, 30))['img']  # annotation made on the raw pixels
    assert img.shape == (30, 40, 3) and img[2, 2, 0] > 200


@pytest.mark.parametrize(
    'make,expect',
    [
        (lambda: Image.new('L', (8, 6), 100), (100, 100, 100)),
        (lambda: Image.new('RGB', (8, 6),
                           (10, 20, 30)).convert('P', palette=Image.Palette.ADAPTIVE), (10, 20, 30)),
        (lambda: Image.new('RGBA', (8, 6), (255, 0, 0, 0)), (255, 255, 255)),  # transparent -> background
        (lambda: Image.new('RGBA', (8, 6), (255, 0, 0, 255)), (255, 0, 0)),
        (lambda: Image.new('LA', (8, 6), (50, 255)), (50, 50, 50)),
        (lambda: Image.fromarray(np.full(
            (6, 8), 32896, np.uint16)), (128, 128, 128)),  # 16-bit scaled, not clipped
    ])
def test_modes_become_rgb_uint8(tmp_path, make, expect):
    p = tmp_path / 'x.png'
    make().save(p)
    img = LoadGranImage()(info(p, 8, 6, boxes=((0, 0, 4, 4), )))['img']
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    assert tuple(int(v) for v in img[3, 3]) == expect


def test_bad_images_raise_named_errors(tmp_path):
    with pytest.raises(BadRecordError) as e:
        LoadGranImage()(info(tmp_path / 'missing.jpg', 8, 6))
    assert e.value.reason == 'image_missing' and 's.jsonl:7' in str(e.value) and e.value.field == 'image'
    (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
    with pytest.raises(BadRecordError) as e:
        LoadGranImage()(info(tmp_path / 'junk.jpg', 8, 6))
    assert e.value.reason == 'image_unreadable'
    Image.new('RGB', (8, 6)).save(tmp_path / 'small.png')
    with pytest.raises(BadRecordError) as e:
        LoadGranImage()(info(tmp_path / 'small.png', 16, 16))
    assert e.value.reason == 'image_size_mismatch'


def test_too_large_checked_before_decoding(tmp_path):
    Image.new('RGB', (40, 30)).save(tmp_path / 'big.png')
    with pytest.raises(BadRecordError, match='image_too_large'):
        LoadGranImage(max_pixels=1000)(info(tmp_path / 'big.png', 40, 30))
    with pytest.raises(BadRecordError, match='image_unreadable'):  # the header says more than the record
        LoadGranImage(max_pixels=1000)(info(tmp_path / 'big.png', 10, 10))


def test_size_mismatch_rescale_option(tmp_path):
    Image.new('RGB', (20, 15)).save(tmp_path / 'half.png')
    out = LoadGranImage(on_size_mismatch='rescale')(
        info(tmp_path / 'half.png', 40, 30, boxes=((4, 6, 20, 30), )))
    assert out['gt_bboxes'].tolist() == [[2, 3, 10, 15]]
    Image.new('RGB', (20, 20)).save(tmp_path / 'square.png')
    with pytest.raises(BadRecordError):  # other aspect ratio: not a scaled copy
        LoadGranImage(on_size_mismatch='rescale')(info(tmp_path / 'square.png', 40, 30))


def test_square_resize_moves_boxes_with_pixels():
    img = np.zeros((50, 100, 3), np.uint8)
    img[10:30, 20:60] = 255  # a white box at x 20..60, y 10..30
    res = GranSquareResize(size=64)(dict(img=img, gt_bboxes=np.array([[20, 10, 60, 30]], np.float32)))
    assert res['img'].shape == (64, 64, 3) and res['img_shape'] == (64, 64)
    np.testing.assert_allclose(res['gt_bboxes'], [[12.8, 6.4, 38.4, 19.2]], rtol=1e-5)
    np.testing.assert_allclose(res['gt_bboxes_norm'], [[0.2, 0.1, 0.6, 0.3]], rtol=1e-5)
    assert res['scale_factor'] == (0.64, 0.64)
    assert res['img'][12, 25].min() > 200  # inside the moved box
    assert tuple(res['img'][60, 10]) == (127, 127, 127)  # bottom padding, pad colour


def test_flip_keeps_boxes_and_words_consistent():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :5] = 255
    res = dict(
        img=img,
        gt_bboxes=np.array([[0, 0, 5, 10]], np.float32),
        region_captions=['the Left lamp'],
        region_kinds=['object'],
        caption='a lamp on the left, LEFT of the rightmost door',
        sample_idx=0)
    out = GranRandomFlip(prob=1.0)(res)
    assert out['flip'] and out['gt_bboxes'].tolist() == [[15, 0, 20, 10]]
    assert out['img'][:, 15:].min() == 255
    assert out['region_captions'] == ['the Right lamp']
    assert out['caption'] == 'a lamp on the right, RIGHT of the leftmost door'
    text = dict(res, region_kinds=['text'], img=img.copy())
    assert not GranRandomFlip(prob=1.0)(text)['flip']
    assert not GranRandomFlip()(dict(res, img=img.copy()))['flip']  # off by default
    assert swap_words('bright lights') == 'bright lights'  # whole words only


def test_pack_contract(tmp_path):
    quadrant_image(40, 30).save(tmp_path / 'q.png')
    results = info(tmp_path / 'q.png', 40, 30, boxes=((0, 0, 20, 15), (20, 15, 40, 30)), caps=('red', 'blue'))
    for t in (LoadGranImage(),
              SampleRegionTasks(dict(global_caption=1, bbox2caption=2),
                                max_distill_regions=1), GranSquareResize(size=32)):
        results = t(results)
    out = PackGranInputs(box_style='int999')(results)
    assert set(out) == {'inputs', 'data_samples'}
    x, s = out['inputs'], out['data_samples']
    assert isinstance(s, GranDataSample) and x.dtype == torch.uint8 and x.shape == (3, 32, 32)
    assert x[0, 2, 2] == 255 and x[2, 2, 2] == 0  # RGB order, red top-left
    assert s.tasks[0]['task'] == 'global_caption' and len(s.tasks) == 3
    by_region = {t['region']: t for t in s.tasks[1:]}
    assert by_region[0]['box'] == pytest.approx([0, 0, 0.5, 0.375])
    assert '[0, 0, 500, 375]' in by_region[0]['question'] and by_region[0]['answer'] == 'red'
    assert s.distill_bboxes.shape == (1, 4) and s.distill_bboxes.dtype == torch.float32
    assert s.distill_bboxes[0].tolist() in ([0, 0, 16, 12], [16, 12, 32, 24])
    for key in ('img_path', 'ori_shape', 'img_shape', 'scale_factor', 'source', 'sample_idx', 'shard',
                'line'):
        assert key in s.metainfo
    assert s.ori_shape == (30, 40) and s.img_shape == (32, 32) and s.line == 7


def test_pack_needs_its_inputs():
    with pytest.raises(KeyError, match='SampleRegionTasks'):
        PackGranInputs()(dict(img=np.zeros((4, 4, 3), np.uint8)))


def test_sample_tasks_skip_empty():
    res = dict(region_captions=['a'], caption=None, sample_idx=0)
    assert SampleRegionTasks(dict(global_caption=1)).transform(dict(res)) is None
    assert SampleRegionTasks(
        dict(global_caption=1), skip_empty=False).transform(dict(res))['task_specs'] == []
