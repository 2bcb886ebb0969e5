"""tools/analysis_tools/eval_table.py: lmms-eval result files -> the paper's Table 1 layout in markdown."""
import json

import pytest
from repo_tools import load_tool


def write_results(path, results, stamp='20260101_000000'):
    path.mkdir(parents=True, exist_ok=True)
    body = {task: {'alias': task, **{f'{m},none': v for m, v in metrics.items()},
                   **{f'{m}_stderr,none': 'N/A' for m in metrics}} for task, metrics in results.items()}
    (path / f'{stamp}_results.json').write_text(json.dumps({'results': body}))


def test_table_layout_groups_and_averages(tmp_path):
    tool = load_tool('tools/analysis_tools/eval_table.py')
    write_results(tmp_path / 'granvit' / 'export', {
        'granvit_refcoco_bbox_rec_testA': {'refcoco_ACC@0.5': 0.80, 'refcoco_IoU': 0.7},
        'granvit_refcoco+_bbox_rec_testA': {'refcoco_ACC@0.5': 0.70},
        'granvit_refcocog_bbox_rec_test': {'refcoco_ACC@0.5': 0.60},
        'docvqa_val': {'anls': 0.5}, 'gransynth_rec': {'refcoco_ACC@0.5': 0.25}})
    write_results(tmp_path / 'siglip', {'refcoco_bbox_rec_testA': {'refcoco_ACC@0.5': 0.5},
                                        'gransynth_rec': {'refcoco_ACC@0.5': 0.10}})
    write_results(tmp_path / 'siglip', {'gransynth_rec': {'refcoco_ACC@0.5': 0.125}},
                  '20260102_000000')  # later run
    out = tmp_path / 'table.md'
    md = tool.main([f'GranViT={tmp_path / "granvit"}', f'SigLIP={tmp_path / "siglip"}', '--out', str(out)])
    assert out.read_text() == md
    lines = md.splitlines()
    assert lines[0] == ('| Encoder | Fine-grained: RefCOCO testA | Fine-grained: RefCOCO+ testA | '
                        'Fine-grained: RefCOCOg test | Fine-grained avg | OCR: DocVQA | OCR avg | '
                        'GranSynth (toy): REC Acc@0.5 | GranSynth (toy) avg |')
    assert lines[2] == '| GranViT | 80.00 | 70.00 | 60.00 | 70.00 | 50.00 | 50.00 | 25.00 | 25.00 |'
    assert lines[3] == '| SigLIP | 50.00 | – | – | – | – | – | 12.50 | 12.50 |'


def test_bad_entries_say_what_is_wrong(tmp_path):
    tool = load_tool('tools/analysis_tools/eval_table.py')
    with pytest.raises(SystemExit, match='NAME=PATH'):
        tool.main(['justapath'])
    with pytest.raises(SystemExit, match='no lmms-eval'):
        tool.main([f'X={tmp_path}'])
    (tmp_path / 'export').mkdir()
    (tmp_path / 'export' / 'config.json').write_text('{}')
    with pytest.raises(SystemExit, match='--tasks'):
        tool.main([f'X={tmp_path / "export"}'])
