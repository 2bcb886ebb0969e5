"""Scale without a scheduler of our own: a SIGKILLed run, rerun with the same command, equals an uninterrupted
run byte for byte; a process pool and Ray Data (local, 2 CPUs) write the same bytes as the plain loop."""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
from engine_assets import REPO, engine_cfg, read_outputs


@pytest.fixture(scope='module')
def reference(synth_root, stage1, tmp_path_factory):
    """The uninterrupted in-process run of the folder of GranSynth val images (5 shards of 4)."""
    from granvit_mm.data_engine import run_engine
    wd = str(tmp_path_factory.mktemp('engine_ref'))
    m = run_engine(engine_cfg(stage1), osp.join(synth_root, 'images', 'val'), wd, log=lambda s: None)
    return dict(bytes=read_outputs(wd), manifest=m, input=osp.join(synth_root, 'images', 'val'))


def _config_file(tmp_path, stage1):
    path = tmp_path / 'engine_cfg.py'
    path.write_text('\n'.join(f'{k} = {v!r}' for k, v in engine_cfg(stage1).items()) + '\n')
    return str(path)


def _cmd(cfg, inp, wd, *extra):
    return [sys.executable, osp.join(REPO, 'tools', 'data_engine.py'), cfg, '--input', inp, '--work-dir', wd,
            *extra]


def _env():
    return dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')


def _same_counts(m, ref):
    keys = ('inputs', 'written', 'rejected', 'counts', 'regions_written', 'stages')
    return {k: m[k] for k in keys} == {k: ref[k] for k in keys}


@pytest.mark.slow
def test_sigkill_at_two_points_then_rerun_equals_uninterrupted(reference, stage1, tmp_path):
    cfg, wd = _config_file(tmp_path, stage1), str(tmp_path / 'killed')
    done = lambda: len(glob.glob(osp.join(wd, 'stats', '*.json')))  # noqa: E731
    for target in (1, 3):  # kill after the first finished shard, then again two shards into the rerun
        proc = subprocess.Popen(_cmd(cfg, reference['input'], wd), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t0 = time.time()
        while done() < target and proc.poll() is None and time.time() - t0 < 300:
            time.sleep(0.05)
        assert proc.poll() is None, 'the run ended before it could be killed'
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert target <= done() < 5 and not osp.exists(osp.join(wd, 'manifest.json'))
    done_before_rerun = done()
    out = subprocess.run(_cmd(cfg, reference['input'], wd), env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f'{5 - done_before_rerun} to do' in out.stdout
    assert read_outputs(wd) == reference['bytes']
    assert not glob.glob(osp.join(wd, '**', '*.tmp-*'), recursive=True)
    assert _same_counts(json.load(open(osp.join(wd, 'manifest.json'))), reference['manifest'])


@pytest.mark.slow
def test_process_pool_of_two_writes_the_loops_bytes(reference, stage1, tmp_path):
    cfg, wd = _config_file(tmp_path, stage1), str(tmp_path / 'pool')
    out = subprocess.run(_cmd(cfg, reference['input'], wd, '--workers', '2'), env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert read_outputs(wd) == reference['bytes']
    rerun = subprocess.run(_cmd(cfg, reference['input'], wd, '--workers', '2'), env=_env(),
                           capture_output=True,
                           text=True, timeout=600)
    assert '0 to do' in rerun.stdout and read_outputs(wd) == reference['bytes']


@pytest.mark.slow
def test_ray_data_on_two_local_cpus_writes_the_loops_bytes(reference, stage1, tmp_path):
    import ray

    from granvit_mm.data_engine import run_engine
    try:
        m = run_engine(engine_cfg(stage1), reference['input'], str(tmp_path / 'ray'), launcher='ray',
                       ray_num_cpus=2, log=lambda s: None)
    finally:
        ray.shutdown()
    assert read_outputs(str(tmp_path / 'ray')) == reference['bytes']
    assert _same_counts(m, reference['manifest'])


def test_ray_resource_check_names_the_shortfall():
    from granvit_mm.data_engine.ray_runner import _check_resources
    stages = [dict(type='DecodeImages', ray=dict(concurrency=2, num_cpus=1)),
              dict(type='X', ray=dict(num_gpus=1)),
              dict(type='Y')]  # 2 + 1 (default) + 0.25 (reader) CPUs and 1 GPU
    with pytest.raises(RuntimeError, match="has {'CPU': 4, 'GPU': 0}"):
        _check_resources(stages, {'CPU': 4})
    with pytest.raises(RuntimeError):
        _check_resources(stages, {'CPU': 4, 'GPU': 1})
    _check_resources(stages, {'CPU': 4.25, 'GPU': 1})
