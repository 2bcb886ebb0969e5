
from repo_tools import load_tool


def test_benchmark_runs_small(tmp_path):
    mod = load_tool('tools/analysis_tools/benchmark_dataset_index.py')
    out = tmp_path / 'b.json'
    mod.main([
        '--lines', '3000', '--samples', '500', '--workers', '1', '--seconds', '0.3', '--tmp-dir',
        str(tmp_path), '--out',
        str(out)
    ])
    import json
    res = json.loads(out.read_text())
    assert res['lines'] == 3000 and res['index_bytes'] == 128 + 8 * (8 + 3001
                                                                     )  # .npy header + header slots + offsets
    assert res['workers'][0]['records_per_s'] > 0
    assert res['extrapolated_29.5M']['index_disk_mb'] > 200
    assert not list(tmp_path.glob('granvit_bench_*'))  # temp data deleted
