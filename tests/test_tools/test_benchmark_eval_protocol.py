"""tools/analysis_tools/benchmark_eval_protocol.py: the tiny step runs on CPU (the code the GPU run uses at
the paper's widths), and a part whose package is missing is reported as skipped instead of failing the run."""
import sys

from repo_tools import load_tool


def test_tiny_step_on_cpu(tmp_path):
    tool = load_tool('tools/analysis_tools/benchmark_eval_protocol.py')
    rows = tool.main(['--step-widths', 'tiny', '--steps', '1', '--warmup', '0', '--out',
                      str(tmp_path / 'b.json')])
    assert [r['vit'] for r in rows] == ['frozen', 'trainable']
    assert all(r['samples_per_s'] > 0 and r['visual_tokens'] == 64 and r['tokens'] == 128 for r in rows)
    assert rows[1]['trainable_params_m'] > rows[0]['trainable_params_m']  # the ViT's weights join
    assert (tmp_path / 'b.json').is_file()


def test_missing_package_is_a_skip(monkeypatch, tmp_path):
    tool = load_tool('tools/analysis_tools/benchmark_eval_protocol.py')
    monkeypatch.setitem(sys.modules, 'xtuner', None)  # as on a GPU box without XTuner
    monkeypatch.setitem(sys.modules, 'xtuner.registry', None)
    rows = tool.main(['--stage3-config', 'projects/granvit_xtuner/configs/'
                      'granvit_tiny_qwen2_tiny_full_instruct_cpu_stage3.py',
                      '--export', str(tmp_path), '--tasks-dir', str(tmp_path), '--lmms-python',
                      str(tmp_path / 'no')])
    assert rows[0]['skipped'].startswith('missing package') and 'no lmms-eval env' in rows[-1]['skipped']
