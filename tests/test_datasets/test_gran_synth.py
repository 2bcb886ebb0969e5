import json
import os
import os.path as osp

import numpy as np
from repo_tools import load_tool

from granvit_mm.toy.gran_synth import (COLOURS, SHAPES, SIZES, TEXTURES, SynthConfig, generate, load_meta,
                                       make_image)


def _lines(d, split):
    with open(osp.join(d, 'annotations', f'{split}.jsonl')) as f:
        return [json.loads(line) for line in f]


def test_layout_meta_and_captions(synth_dir):
    meta = load_meta(synth_dir)
    assert meta['stats']['train']['images'] == 12 and meta['stats']['val']['images'] == 4
    assert meta['annotations'] == {'train': ['annotations/train.jsonl'], 'val': ['annotations/val.jsonl']}
    for split in ('train', 'val'):
        for rec in _lines(synth_dir, split):
            assert osp.isfile(osp.join(synth_dir, 'images', rec['image']))
            assert max(rec['width'], rec['height']) == 96
            caps = [r['caption'] for r in rec['regions']]
            assert len(set(caps)) == len(caps)  # one right answer per caption
            for r in rec['regions']:
                assert len(r['caption'].split()) <= 10
                if r['kind'] == 'object':
                    _, size, colour, texture, shape = r['caption'].split()
                    assert size in SIZES and colour in COLOURS and texture in TEXTURES and shape in SHAPES
                    side = r['bbox'][2] - r['bbox'][0]
                    assert side * 64 / 96 >= 12  # >= 1.5 patches of 8 px at a 64 px input
            if rec['source'] == 'gran_synth_ocr':
                assert rec['caption'] is None
            else:
                assert rec['caption'].startswith('an image of')


def test_deterministic_and_order_independent(tmp_path):
    cfg = SynthConfig(num_train=3, num_val=1, image_size=64, seed=5, ocr_fraction=0.5)
    img_a, rec_a = make_image(cfg, 'train', 2)
    img_b, rec_b = make_image(cfg, 'train', 2)
    assert rec_a == rec_b and np.array_equal(np.asarray(img_a), np.asarray(img_b))
    generate(str(tmp_path / 'a'), num_train=3, num_val=1, image_size=64, seed=5, ocr_fraction=0.5)
    assert _lines(str(tmp_path / 'a'), 'train')[2] == rec_b


def test_noop_when_same_params_and_regenerates_otherwise(tmp_path):
    out = str(tmp_path / 's')
    generate(out, num_train=2, num_val=1, image_size=64)
    ann = osp.join(out, 'annotations', 'train.jsonl')
    stamp = os.stat(ann).st_mtime_ns
    generate(out, num_train=2, num_val=1, image_size=64)
    assert os.stat(ann).st_mtime_ns == stamp
    meta = generate(out, num_train=3, num_val=1, image_size=64)
    assert meta['stats']['train']['images'] == 3 and len(_lines(out, 'train')) == 3


def test_shards_and_cli(tmp_path):
    mod = load_tool('tools/misc/make_gran_synth.py')
    out = str(tmp_path / 'cli')
    meta = mod.main(
        ['--out-dir', out, '--num-train', '5', '--num-val', '2', '--image-size', '64', '--shards', '2'])
    assert meta['annotations']['train'] == [
        'annotations/train-00000-of-00002.jsonl', 'annotations/train-00001-of-00002.jsonl'
    ]
    from granvit_mm.datasets import GranDataset
    assert len(GranDataset('annotations/train-*.jsonl', data_root=out, pipeline=[])) == 5


def test_ocr_fraction_all_pages(tmp_path):
    meta = generate(str(tmp_path / 'o'), num_train=4, num_val=0, image_size=96, ocr_fraction=1.0)
    assert meta['stats']['train']['ocr_images'] == 4
