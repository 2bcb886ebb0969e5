"""A corpus of bad images through a real engine run: each one a counted reject with its reason, or handled
right (decoded to RGB at its displayed size), never a crash; the counts add up."""
import json
import os
import os.path as osp
import struct
import zlib

import numpy as np
from engine_assets import engine_cfg, read_outputs
from PIL import Image


def _png_claiming(path, width, height):
    """A 1x1 PNG whose header says ``width`` x ``height`` (a decompression bomb's header, cheaply)."""
    Image.new('L', (1, 1)).save(path)
    data = bytearray(open(path, 'rb').read())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length + type
    data[ihdr:ihdr + 8] = struct.pack('>II', width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack('>I', zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    open(path, 'wb').write(bytes(data))


def _corpus(root):
    """name -> (file written, expected outcome: a reject key, or the (width, height) written)."""
    rng = np.random.default_rng(0)
    rgb = lambda w, h: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # noqa: E731
    os.makedirs(root)
    p = lambda n: osp.join(root, n)  # noqa: E731
    rgb(80, 60).save(p('good.jpg'))
    open(p('zero.jpg'), 'wb').close()
    rgb(96, 64).save(p('full.jpg'), quality=90)
    open(p('truncated.jpg'), 'wb').write(open(p('full.jpg'), 'rb').read()[:600])
    os.remove(p('full.jpg'))
    open(p('text.jpg'), 'w').write('this is not an image\n' * 20)
    _png_claiming(p('bomb.png'), 40_000, 40_000)
    Image.fromarray((rng.integers(0, 65535, (48, 64))).astype(np.uint16)).save(p('deep16.png'))
    Image.new('CMYK', (64, 48), (0, 128, 255, 0)).save(p('cmyk.jpg'))
    pal = Image.new('P', (64, 48), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(p('palette.png'), transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the 80x40 pixels are shown as 40x80
    rgb(80, 40).save(p('exif_rotated.jpg'), exif=exif)
    rgb(1, 1).save(p('one_px.png'))
    frames = [rgb(64, 48) for _ in range(3)]
    frames[0].save(p('animated.gif'), save_all=True, append_images=frames[1:], duration=50, loop=0)
    if os.geteuid() == 0:  # root reads a chmod-000 file: make the read fail another way
        os.makedirs(p('unreadable.jpg'))
    else:
        rgb(32, 32).save(p('unreadable.jpg'))
        os.chmod(p('unreadable.jpg'), 0)
    expected = {
        'good.jpg': (80, 60), 'zero.jpg': 'ingest:image_empty', 'truncated.jpg': 'ingest:image_truncated',
        'text.jpg': 'ingest:not_an_image', 'bomb.png': 'ingest:image_too_large', 'deep16.png': (64, 48),
        'cmyk.jpg': (64, 48), 'palette.png': (64, 48), 'exif_rotated.jpg': (40, 80),
        'one_px.png': 'filter:short_side', 'animated.gif': (64,
                                                            48), 'unreadable.jpg': 'ingest:image_unreadable',
        'missing.jpg': 'ingest:image_missing'}
    lines = list(expected) + ['good.jpg']  # the duplicate
    return lines, expected


def test_bad_image_corpus_through_a_real_run(stage1, tmp_path):
    from granvit_mm.data_engine import run_engine
    root = str(tmp_path / 'corpus')
    lines, expected = _corpus(root)
    lst = tmp_path / 'list.txt'
    lst.write_text('# the corpus\n' + '\n'.join(osp.join(root, n) for n in lines) + '\n')
    cfg = engine_cfg(stage1, shard_size=64)
    cfg['stages'][1]['max_per_image'] = 8  # random weights: enough boxes that every decodable image keeps one
    cfg['stages'][2].update(min_aspect=0.1, max_aspect=10)
    m = run_engine(cfg, str(lst), str(tmp_path / 'out'), img_root=root,
                   log=lambda s: None)
    rejects = sorted(v for v in expected.values() if isinstance(v, str)) + ['input:duplicate_input']
    assert m['rejected'] == {k: rejects.count(k) for k in rejects}, m['rejected']
    assert m['inputs'] == len(lines) == m['written'] + m['rejected_total']
    recs = {r['image']: r for r in map(json.loads, read_outputs(str(tmp_path / 'out')).decode().splitlines())}
    assert {k: (r['width'], r['height']) for k, r in recs.items()} == \
        {k: v for k, v in expected.items() if isinstance(v, tuple)}
    for r in recs.values():
        assert all(0 <= b[0] < b[2] <= r['width'] and 0 <= b[1] < b[3] <= r['height']
                   for b in (reg['bbox'] for reg in r['regions']))
    assert recs['animated.gif']['provenance']['flags'] == ['first_of_3_frames']


def test_pillow_bomb_limit_is_the_configured_value(tmp_path):
    from granvit_mm.data_engine import DecodeImages
    from granvit_mm.data_engine.item import make_item
    Image.new('RGB', (50, 40)).save(tmp_path / 'a.png')
    stage = DecodeImages(max_pixels=1999)
    assert Image.MAX_IMAGE_PIXELS == 1999
    it = make_item(0, str(tmp_path / 'a.png'), 'a.png', 'x')
    stage([it])
    assert it['reject'] == 'ingest:image_too_large' and it['pixels'] is None
    DecodeImages()  # back to the default for the other tests
