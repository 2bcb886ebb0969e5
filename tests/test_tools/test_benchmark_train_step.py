"""tools/analysis_tools/benchmark_train_step.py: one command measures a stage-1 training step and its design
variants; the variants compute the same caption loss, and the naive K-sequence form does more work."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from granvit_mm.toy.tiny_llm import save_tiny_llm

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_train_step.py')
TINY = osp.join(ROOT, 'configs', 'granvit_pretrain_tiny.py')


@pytest.fixture(scope='module')
def llm_dir(tmp_path_factory):
    return save_tiny_llm(str(tmp_path_factory.mktemp('tiny_llm')), vocab_size=400)


def test_benchmark_reports_every_variant(llm_dir, tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, TOOL, TINY, '--synthetic', '--turns', '3', '--batch-size', '2', '--steps', '1',
         '--warmup', '0', '--out', str(out), '--cfg-options', f'model.head.llm_path={llm_dir}',
         'model.backbone.init_cfg=None',
         'model.distill_loss.max_regions=2'],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = {r['variant']: r for r in json.loads(out.read_text())}
    assert set(rows) == {'packed', 'separate', 'full_vocab', 'no_distill'}
    for r in rows.values():
        assert r['step_s'] > 0 and r['images_per_s'] == pytest.approx(2 / r['step_s'])
        assert r['gflop_per_step'] > 0 and r['peak_rss_gib'] > 0
    # the same math, three ways
    for name in ('separate', 'full_vocab'):
        packed = rows['packed']['loss_caption_step0']
        assert rows[name]['loss_caption_step0'] == pytest.approx(packed, abs=1e-5)
    # what each choice costs: repeated prefixes, full-vocabulary logits, the teacher
    assert rows['separate']['gflop_per_step'] > rows['packed']['gflop_per_step']
    assert rows['full_vocab']['gflop_per_step'] > rows['packed']['gflop_per_step']
    assert rows['no_distill']['gflop_per_step'] < rows['packed']['gflop_per_step']
    assert rows['packed']['teacher'] and not rows['no_distill']['teacher']
    assert '| packed |' in proc.stdout and 'max difference' in proc.stdout
