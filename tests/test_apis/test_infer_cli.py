"""tools/infer.py: a folder, a Gran JSONL and one image in; JSONL results, drawn PNGs and feature views
out."""
import json
import os.path as osp

import pytest
from PIL import Image
from repo_tools import load_tool
from stage1_assets import wide_image


@pytest.fixture(scope='module')
def cli():
    return load_tool('tools/infer.py', 'granvit_infer_cli')


@pytest.fixture(scope='module')
def gran_synth(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    root = tmp_path_factory.mktemp('gran_synth')
    generate(str(root), num_train=1, num_val=3)
    return root


def _lines(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def test_caption_a_gran_jsonl(cli, stage1, gran_synth, tmp_path, capsys):
    rc = cli.main(['caption', stage1['config'], stage1['checkpoint'],
                   str(gran_synth / 'annotations' / 'val.jsonl'), '--llm-path', stage1['llm_path'],
                   '--global-caption', '--batch-size', '2', '--out-dir', str(tmp_path)])
    assert rc == 0
    lines = _lines(tmp_path / 'results.jsonl')
    records = _lines(gran_synth / 'annotations' / 'val.jsonl')
    assert len(lines) == 3
    for line, rec in zip(lines, records):
        assert (line['width'], line['height']) == (rec['width'], rec['height'])
        assert [r['bbox'] for r in line['regions']] == [r['bbox'] for r in rec['regions']]
        assert [r['gt_caption'] for r in line['regions']] == [r['caption'] for r in rec['regions']]
        assert isinstance(line['caption'], str)
    pngs = sorted(p.name for p in (tmp_path / 'vis').iterdir())
    assert pngs == ['000000_000000.png', '000001_000001.png', '000002_000002.png']
    assert Image.open(tmp_path / 'vis' / pngs[0]).size == (records[0]['width'], records[0]['height'])
    assert '3/3, ' in capsys.readouterr().out  # mmengine's progress bar


def test_ground_a_folder_with_a_bad_file(cli, stage1, tmp_path, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    Image.fromarray(wide_image(200, 100)).save(folder / 'a.png')
    Image.fromarray(wide_image(90, 120, seed=1)).save(folder / 'b.jpg')
    (folder / 'c.png').write_text('not an image')
    out = tmp_path / 'out'
    rc = cli.main(['ground', stage1['config'], stage1['checkpoint'], str(folder), '--phrases', 'a red circle',
                   'a blue star', '--llm-path', stage1['llm_path'], '--out-dir', str(out),
                   '--batch-size', '3'])
    assert rc == 1  # one image failed, the others were done
    lines = _lines(out / 'results.jsonl')
    assert [osp.basename(line['image']) for line in lines] == ['a.png', 'b.jpg', 'c.png']
    assert 'not an image' in lines[2]['error'] and 'grounding' not in lines[2]
    for line in lines[:2]:
        assert [g['phrase'] for g in line['grounding']] == ['a red circle', 'a blue star']
        for g in line['grounding']:
            assert g['bbox'] is None or (0 <= g['bbox'][0] < g['bbox'][2] <= line['width'])
    assert sorted(p.name for p in (out / 'vis').iterdir()) == ['a.png', 'b.png']
    assert '1 image(s) failed' in capsys.readouterr().out


def test_features_side_by_side(cli, stage1, tmp_path):
    img = tmp_path / 'wide.png'
    Image.fromarray(wide_image(200, 100)).save(img)
    rc = cli.main(['features', stage1['checkpoint'], str(img), '--config', stage1['config'], '--compare',
                   stage1['checkpoint'], '--compare-config', stage1['config'], '--label', 'student',
                   '--compare-label', 'again', '--view-size', '100', '--save-npy',
                   '--out-dir', str(tmp_path)])
    assert rc == 0
    line = _lines(tmp_path / 'results.jsonl')[0]
    assert line['student'] == dict(shape=[64, 8, 8], image_grid=[4, 8])
    view = Image.open(line['view'])
    assert view.size == (3 * 100 + 2 * 8, 50 + 22)  # image | student | again, 2:1 aspect, labels on top
    import numpy as np
    assert np.load(tmp_path / 'features' / 'wide_student.npy').shape == (64, 4, 8)


def test_nothing_to_ask_and_missing_input(cli, stage1, tmp_path):
    img = tmp_path / 'a.png'
    Image.fromarray(wide_image(20, 20)).save(img)
    with pytest.raises(SystemExit, match='nothing to ask'):
        cli.main(['caption', stage1['config'], stage1['checkpoint'], str(img),
                  '--llm-path', stage1['llm_path'], '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match='input not found'):
        cli.main(['caption', stage1['config'], stage1['checkpoint'], str(tmp_path / 'none.png')])
    rc = cli.main(['caption', stage1['config'], stage1['checkpoint'], str(img), '--boxes', '0,0,30,10',
                   '--llm-path', stage1['llm_path'], '--out-dir', str(tmp_path / 'o')])
    assert rc == 1
    error = _lines(tmp_path / 'o' / 'results.jsonl')[0]['error']
    assert 'box 0 [0, 0, 30, 10] is outside the 20x20 image' in error
