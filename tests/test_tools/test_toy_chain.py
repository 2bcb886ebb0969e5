"""tools/analysis_tools/toy_chain.py: the summary over seeds, the table, and a failing step stopping the
chain.

The chain itself runs the stock tools (each has its own tests); a full run is ~1 hour and recorded in
docs/toy_chain.md.
"""
import json
import sys

import pytest
from repo_tools import load_tool


@pytest.fixture(scope='module')
def chain():
    return load_tool('tools/analysis_tools/toy_chain.py')


def test_summary_is_mean_and_spread_over_the_seeds_that_have_the_measure(chain):
    per_seed = {
        0: dict(probe=dict(random=74.0, siglip=77.0), stage2_acc50=dict(siglip=5.0),
                pixel_r2=dict(random=96.0, siglip=76.0)),
        1: dict(probe=dict(random=75.0, siglip=80.0)),
        2: dict(probe=dict(random=73.0, siglip=77.0)),
    }
    s = chain.summarise(per_seed)
    assert s['probe']['random'] == dict(mean=74.0, spread=2.0, values=[74.0, 75.0, 73.0])
    assert s['probe']['siglip']['mean'] == pytest.approx(78.0) and s['probe']['siglip']['spread'] == 3.0
    assert s['stage2_acc50'] == {'siglip': dict(mean=5.0, spread=0.0, values=[5.0])}  # seed 0 only
    assert 'det_map' not in s

    text = chain.table(s, [0, 1, 2])
    rows = {line.split(' | ')[0]: line for line in text.splitlines() if line.startswith('| ')}
    probe_row = next(v for k, v in rows.items() if 'region probe' in k)
    assert '(n=3)' in probe_row and '74.0 ± 1.0' in probe_row and '78.0 ± 1.5' in probe_row
    stage2_row = next(v for k, v in rows.items() if 'Caption2Bbox' in k)
    assert '(n=1)' in stage2_row and '5.0 ± 0.0' in stage2_row
    pixel_row = next(v for k, v in rows.items() if 'pixels' in k)
    assert '96.0 ± 0.0 | 76.0 ± 0.0 |  |  |' in pixel_row
    assert [k for k in rows if k not in ('| measure', '| ---')] == [
        '| region probe, mean attribute acc. % (n=3)', '| patch pixels from its token, ridge R^2 % (n=1)',
        '| stage 2 Caption2Bbox Acc@0.5 % (n=1)']
    assert text.splitlines()[0] == '| measure | random | siglip | granvit_nodistill | granvit |'


def test_scalars_reads_the_latest_run(chain, tmp_path):
    for stamp, value in (('20260101_000000', 1.0), ('20260102_000000', 2.0)):
        d = tmp_path / stamp / 'vis_data'
        d.mkdir(parents=True)
        (d / 'scalars.json').write_text(json.dumps({'coco/bbox_mAP': value, 'step': 300}) + '\n')
    assert chain.scalars(str(tmp_path)) == [{'coco/bbox_mAP': 2.0, 'step': 300}]
    assert chain.scalars(str(tmp_path / 'none')) == []


def test_a_failing_step_stops_with_its_log(chain, tmp_path, capsys):
    log = str(tmp_path / 'sub' / 'step.log')
    with pytest.raises(SystemExit) as err:
        chain.run([sys.executable, '-c', 'import sys; print("the cause"); sys.exit(3)'], log)
    assert 'exit 3' in str(err.value) and 'the cause' in str(err.value) and log in str(err.value)


def test_missing_inputs_name_the_make_target(chain, tmp_path):
    with pytest.raises(SystemExit, match='make tiny-siglip'):
        chain.main(['--work-dir', str(tmp_path / 'w'), '--data-root', str(tmp_path),
                    '--siglip', str(tmp_path / 'no_siglip.pth'), '--llm-path', str(tmp_path / 'no_llm')])


def test_stage1_curves_put_val_rows_at_the_training_iteration_before_them(chain):
    rows = [dict(iter=10, step=10, loss_caption=0.9),
            dict(iter=250, step=250, loss_caption=0.5, mse_distill=0.0),
            {'bbox2caption/rouge_l': 40.0, 'step': 0},
            dict(iter=500, step=500, loss_caption=0.4, mse_distill=0.2),
            {'bbox2caption/rouge_l': 45.0, 'step': 0}]
    curves = chain.stage1_curves(rows)
    assert curves['rouge_l'] == [(250, 40.0), (500, 45.0)]
    assert curves['loss_caption'] == [(10, 0.9), (250, 0.5), (500, 0.4)]
    assert curves['mse_distill'] == [(250, 0.0), (500, 0.2)]
