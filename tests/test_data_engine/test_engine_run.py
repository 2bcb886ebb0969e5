"""The engine end to end on GranSynth images (folder input and Gran JSONL input): valid Gran JSONL that the
training reader loads unchanged, counts that add up, provenance, the word limit, given boxes kept."""
import json
import os.path as osp

import numpy as np
from engine_assets import engine_cfg, read_outputs


def _records(work_dir):
    return [json.loads(line) for line in read_outputs(work_dir).decode().splitlines()]


def test_folder_run_loads_in_the_training_reader(synth_root, stage1, tmp_path):
    from granvit_mm.data_engine import run_engine
    from granvit_mm.datasets import GranDataset
    images = osp.join(synth_root, 'images', 'val')
    m = run_engine(engine_cfg(stage1), images, str(tmp_path / 'out'), log=lambda s: None)
    assert m['inputs'] == 20 and m['written'] + m['rejected_total'] == 20 and m['written'] >= 18
    assert m['stages']['ingest']['inputs'] == 20 and m['stages']['write']['out'] == m['written']
    recs = _records(str(tmp_path / 'out'))
    assert len(recs) == m['written'] and [r['image'] for r in recs] == sorted(r['image'] for r in recs)
    for r in recs:
        w, h = __import__('PIL.Image', fromlist=['Image']).open(osp.join(images, r['image'])).size
        assert (r['width'], r['height']) == (w, h)
        assert r['caption'] and 1 <= len(r['regions']) <= 2
        assert all(len(reg['caption'].split()) <= 4 and reg['kind'] == 'object' for reg in r['regions'])
        assert r['provenance']['boxes'].startswith('mmdet:retinanet_granvit-tiny') \
            and r['provenance']['captions'] == 'granvit:iter_1.pth' and r['provenance']['run'] == m['run']
    ds = GranDataset(m['reader']['ann_file'], data_prefix=m['reader']['data_prefix'], test_mode=True,
                     pipeline=[dict(type='granvit.LoadGranImage')])
    assert len(ds) == len(recs)
    for i in range(len(ds)):  # on_bad_record='raise' in test mode: any mismatch would raise
        item = ds[i]
        assert item['img'].shape[:2] == (recs[i]['height'], recs[i]['width'])
    assert m['counts'].get('caption:region_captions_cut', 0) >= 0


def test_gran_jsonl_input_keeps_boxes_and_redoes_captions(synth_root, stage1, tmp_path):
    from granvit_mm.data_engine import run_engine
    src = [json.loads(line) for line in open(osp.join(synth_root, 'annotations', 'val.jsonl'))][:6]
    src[1]['width'] += 7  # its boxes would land on the wrong pixels: refused, not rescaled
    src.append(dict(src[0], regions=[dict(bbox=[5, 5, 'x', 9], caption='a', kind='object')]))
    inp = tmp_path / 'in.jsonl'
    inp.write_text(''.join(json.dumps(r) + '\n' for r in src) + '{"image": "val/000001.png", "width": 3\n')
    m = run_engine(engine_cfg(stage1), str(inp), str(tmp_path / 'out'),
                   img_root=osp.join(synth_root, 'images'),
                   log=lambda s: None)
    # the bad box is dropped and counted; its record, left without boxes, is the filter's to refuse
    assert m['rejected'] == {'ingest:size_mismatch': 1, 'filter:no_boxes': 1, 'input:bad_record_json': 1}
    assert m['counts']['input:regions_dropped'] == 1 and m['inputs'] == 8
    out = {r['image']: r for r in _records(str(tmp_path / 'out'))}
    assert len(out) == 5 == m['written']
    for r in src[:6]:
        if r is src[1]:
            continue
        got = out[r['image']]
        assert [g['bbox'] for g in got['regions']] == [[float(v) for v in x['bbox']] for x in r['regions']] \
            or r['source'] == 'gran_synth_ocr'
        assert got['provenance']['boxes'] == 'given'
        kinds = [x['kind'] for x in r['regions']]
        for g, x, k in zip(got['regions'], r['regions'], kinds):
            assert (g['caption'] == x['caption']) == (k == 'text')  # text keeps its transcription
        assert (got['caption'] is None) == (r['source'] == 'gran_synth_ocr')


def test_word_limit_flag_keeps_and_names_the_caption():
    from granvit_mm.data_engine.captioner import CaptionRegions
    from granvit_mm.data_engine.item import make_item
    from granvit_mm.registry import DATA_ENGINE_STAGES

    @DATA_ENGINE_STAGES.register_module(force=True)
    class _Wordy:
        tag = 'wordy'

        def __init__(self, n):
            self.n = n

        def caption(self, images, boxes, want_global):
            return [('g', ['w ' * self.n] * len(b)) for b in boxes]

    for mode, n_words in (('cut', 3), ('flag', 12)):
        stage = CaptionRegions(backend=dict(type='_Wordy', n=12), max_region_words=3, over_limit=mode)
        it = make_item(0, '', 'a.png', 'x', [dict(bbox=[0, 0, 5, 5], caption='', kind='object')], 8, 8)
        it['pixels'] = np.zeros((8, 8, 3), np.uint8)
        stage([it])
        assert len(it['regions'][0]['caption'].split()) == n_words
        key = 'caption:region_captions_' + ('cut' if mode == 'cut' else 'flagged')
        assert it['counts'] == {key: 1} and (mode == 'cut') == (not it['flags'])
