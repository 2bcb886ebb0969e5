"""SIGKILL a tiny stage-1 run (no clean stop) and resume it with ``tools/train.py --resume``: the continued
run must reproduce the uninterrupted one EXACTLY on CPU -- the losses of every later iteration, the images and
tasks each iteration saw, and the final student, projector and EMA teacher, bit for bit.

A kill that lands while a checkpoint is being written must not leave a file that ``--resume`` picks up: the
checkpoint reaches its final name only by ``os.replace`` and ``last_checkpoint`` is rewritten only after it.
"""
import os
import os.path as osp
import random

import pytest
import torch
from tiny_stage1 import ROOT, last_rows, make_assets, read_probe, run_tool, write_config

from granvit_mm.engine.checkpoint_io import latest_checkpoint

MAX_ITERS, INTERVAL = 8, 2
PROBE = '''
custom_imports = dict(imports=['tiny_stage1'], allow_failed_imports=False)
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook'), dict(type='StepProbeHook'){}]
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('kill'))
    data_root, llm_dir = make_assets(root)

    def cfg(name, hook=''):
        return write_config(osp.join(root, f'{name}.py'), data_root, llm_dir, batch_size=2,
                            max_iters=MAX_ITERS, ckpt_interval=INTERVAL, extra=PROBE.format(hook))

    plain = cfg('plain')
    ref = osp.join(root, 'ref')
    proc = run_tool([plain, '--work-dir', ref])
    assert proc.returncode == 0, proc.stderr[-5000:]
    return dict(root=root, cfg=cfg, plain=plain, ref=ref, assets=(data_root, llm_dir))


def _assert_same_run(resumed_dir, ref_dir, from_iter, killed_rows):
    _, ref_rows = read_probe(ref_dir)
    starts, rows = read_probe(resumed_dir)
    assert len(starts) == 2  # the killed run and the resumed one
    assert [r['iter'] for r in rows[killed_rows:]] == list(range(from_iter, MAX_ITERS))  # resumed there
    rows = last_rows(rows)
    assert [r['iter'] for r in rows] == list(range(MAX_ITERS))
    for ref, got in zip(ref_rows, rows):  # iterations before the kill, and those redone after the resume
        assert got['samples'] == ref['samples'] and got['tasks'] == ref['tasks'], got['iter']
        for key in ('loss', 'loss_caption', 'loss_distill'):
            assert got[key] == ref[key], (got['iter'], key, got[key], ref[key])  # exact, not approx
    final = torch.load(osp.join(resumed_dir, 'probe_rank0_final.pth'), weights_only=True)
    want = torch.load(osp.join(ref_dir, 'probe_rank0_final.pth'), weights_only=True)
    assert set(final) == set(want) and any(k.startswith('teacher.module.') for k in final)
    for key in want:
        assert torch.equal(final[key], want[key]), key
    assert int(final['teacher.steps']) == 1 + MAX_ITERS


@pytest.mark.slow
def test_sigkill_at_a_random_iteration_then_resume_matches_exactly(setup):
    at = random.Random(os.getpid()).randint(3, MAX_ITERS - 1)
    work = osp.join(setup['root'], f'killed_at_{at}')
    killed = run_tool([setup['cfg'](f'kill_{at}', f', dict(type="SigkillHook", at_iter={at})'),
                       '--work-dir', work])
    assert killed.returncode == -9, f'kill at iteration {at}: rc {killed.returncode}\n{killed.stderr[-3000:]}'
    saved = at // INTERVAL * INTERVAL
    assert latest_checkpoint(work) == osp.join(work, f'iter_{saved}.pth')
    _, rows = read_probe(work)
    assert rows[-1]['iter'] == at - 1  # it really ran to the kill

    resumed = run_tool([setup['plain'], '--work-dir', work, '--resume'])
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    _assert_same_run(work, setup['ref'], saved, killed_rows=at)


@pytest.mark.slow
def test_sigkill_while_saving_leaves_no_checkpoint_to_resume_from(setup):
    at = 6  # killed while iter_6.pth is written: resume must take iter_4.pth
    work = osp.join(setup['root'], 'killed_saving')
    killed = run_tool([setup['cfg']('kill_save', f', dict(type="SigkillDuringSaveHook", at_iter={at})'),
                       '--work-dir', work])
    assert killed.returncode == -9, killed.stderr[-3000:]
    files = sorted(os.listdir(work))
    assert f'iter_{at}.pth' not in files  # the half-done write never got the final name
    assert any(f.startswith(f'.iter_{at}.pth.granvit-tmp-') for f in files), files
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, f'iter_{at - INTERVAL}.pth')
    torch.load(osp.join(work, f'iter_{at - INTERVAL}.pth'), weights_only=True)  # complete and safe

    resumed = run_tool([setup['plain'], '--work-dir', work, '--resume'])
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    # the kill came in iteration at-1's checkpoint save, before the probe logged that iteration
    _assert_same_run(work, setup['ref'], at - INTERVAL, killed_rows=at - 1)
    assert not [f for f in os.listdir(work) if 'granvit-tmp' in f]  # the dead run's temp file was cleaned up


@pytest.mark.slow
def test_fsdp_killed_mid_write_resumes_from_the_last_complete_checkpoint(setup):
    """MMEngine's FlexibleRunner + FSDP (2 processes): the strategy writes the checkpoint with its own code;
    a kill half-way through the write of iter_6 leaves nothing under that name, and ``--resume`` continues
    from iter_4 to the run the uninterrupted FSDP run made."""
    from mmengine.config import Config
    strategy = Config.fromfile(osp.join(ROOT, 'configs', 'granvit_pretrain_fsdp.py')).strategy.to_dict()
    flexible = f"runner_type = 'FlexibleRunner'\nstrategy = {strategy!r}\n"

    def cfg(name, hook=''):
        return write_config(osp.join(setup['root'], f'{name}.py'), *setup['assets'], batch_size=2,
                            max_iters=MAX_ITERS, ckpt_interval=INTERVAL, extra=PROBE.format(hook) + flexible)

    plain, ref = cfg('fsdp_plain'), osp.join(setup['root'], 'fsdp_ref')
    done = run_tool([plain, '--work-dir', ref], nproc=2)
    assert done.returncode == 0, done.stderr[-5000:]
    at, work = 6, osp.join(setup['root'], 'fsdp_killed')
    killed = run_tool([cfg('fsdp_kill', f', dict(type="SigkillMidWriteHook", at_iter={at})'),
                       '--work-dir', work], nproc=2)
    assert killed.returncode != 0, killed.stderr[-3000:]
    files = sorted(os.listdir(work))
    assert f'iter_{at}.pth' not in files, files  # the half-written bytes never got the final name
    assert any(f.startswith(f'.iter_{at}.pth.granvit-tmp-') for f in files), files
    assert latest_checkpoint(work) == osp.join(work, f'iter_{at - INTERVAL}.pth')

    resumed = run_tool([plain, '--work-dir', work, '--resume'], nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    _assert_same_run(work, ref, at - INTERVAL, killed_rows=at - 1)
    assert not [f for f in os.listdir(work) if 'granvit-tmp' in f]  # the dead run's temp file was cleaned up
