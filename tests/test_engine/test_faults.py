"""Faults during training: a full disk while saving, a dataloader worker that dies, a shard that disappears.

Each run must stop with a message that names the cause (or go on where that is safe), and lose nothing that
was already saved: the last complete checkpoint stays loadable with ``weights_only=True`` and ``--resume``
takes it.
"""
import errno
import os
import os.path as osp
import signal
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from tiny_stage1 import make_assets, write_config
from torch.utils.data import Dataset

from granvit_mm.engine.checkpoint_io import (AtomicLocalBackend, CheckpointSaveError, is_loadable,
                                             latest_checkpoint)
from granvit_mm.engine.faults import describe_stop


class _Data(Dataset):
    def __init__(self, die_at=None):
        self.die_at = die_at

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if self.die_at is not None and i == self.die_at and torch.utils.data.get_worker_info() is not None:
            time.sleep(1.0)  # let the main process take the batches already sent
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies, as under the OOM killer
        return dict(inputs=torch.full((2,), float(i)), target=torch.tensor(float(i)))


class _Model(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, inputs, target, mode='tensor'):
        return dict(loss=((self.lin(inputs).squeeze(-1) - target) ** 2).mean())


def _toy_runner(work_dir, max_iters, resume=False, dataset=None, num_workers=0, keep=1):
    return Runner(
        model=_Model(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=dataset or _Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, num_workers=num_workers, persistent_workers=False,
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False,
                                           max_keep_ckpts=keep)),
        custom_hooks=[dict(type='granvit.WeightsOnlyCheckpointHook')],
        resume=resume, default_scope='granvit', log_level='WARNING')


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _toy_runner(tmp_path, 2).train()
    assert is_loadable(str(tmp_path / 'iter_2.pth'))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'fsync', full)
    # max_keep_ckpts=1: MMEngine deletes iter_2.pth *before* writing iter_4.pth; the save fails, so it must
    # come back
    with pytest.raises(CheckpointSaveError,
                       match=r'(?s)iter_4\.pth: no space left on device.*iter_2\.pth') as err:
        _toy_runner(tmp_path, 4, resume=True).train()
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    files = sorted(os.listdir(tmp_path))
    assert 'iter_4.pth' not in files and not [f for f in files if 'granvit' in f], files
    assert is_loadable(str(tmp_path / 'iter_2.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    assert 'the disk is full' in describe_stop(err.value, str(tmp_path), 3)

    runner = _toy_runner(tmp_path, 4, resume=True)  # space is back: resume from iter 2 and finish
    runner.train()
    assert runner.iter == 4 and is_loadable(str(tmp_path / 'iter_4.pth'))
    assert not (tmp_path / 'iter_2.pth').exists()  # max_keep_ckpts=1 applies once the new one landed


def test_a_dead_dataloader_worker_stops_the_run_with_its_cause(tmp_path):
    runner = _toy_runner(tmp_path, 8, dataset=_Data(die_at=5), num_workers=1, keep=3)
    # PyTorch says 'DataLoader worker ... exited unexpectedly', or, if the worker dies while the main process
    # fetches a prefetched batch's shared memory from it, raises a connection error from the loader
    with pytest.raises((RuntimeError, ConnectionError)) as err:
        runner.train()
    assert runner.iter == 2  # iterations 1-2 ran and iter_2.pth was saved; the batch with index 5 killed it
    msg = describe_stop(err.value, str(tmp_path), runner.iter)
    assert 'dataloader worker process died' in msg and 'iter_2.pth' in msg
    assert is_loadable(str(tmp_path / 'iter_2.pth'))


def test_last_checkpoint_left_empty_by_a_kill_falls_back_to_the_newest_complete_file(tmp_path):
    _toy_runner(tmp_path, 4, keep=3).train()
    (tmp_path / 'last_checkpoint').write_text('')  # killed between open('w') and write()
    with open(tmp_path / 'iter_6.pth', 'wb') as f:  # a truncated file from some other writer
        f.write(open(tmp_path / 'iter_4.pth', 'rb').read()[:100])
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')


def test_atomic_backend_never_exposes_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / 'iter_2.pth'
    target.write_bytes(b'old complete checkpoint')

    def crash(fd):
        raise OSError(errno.EIO, 'I/O error')

    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(CheckpointSaveError, match='I/O error'):
        AtomicLocalBackend().put(b'new bytes', target)
    assert target.read_bytes() == b'old complete checkpoint' and os.listdir(tmp_path) == ['iter_2.pth']


@HOOKS.register_module(force=True)
class _DeleteShardHook(Hook):
    def __init__(self, shard, after_iter):
        self.shard, self.after_iter = shard, after_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.after_iter and osp.exists(self.shard):
            os.remove(self.shard)


def test_a_shard_that_disappears_mid_run(tmp_path):
    """A worker that has the shard open keeps reading it (the bytes are still there: safe, the run goes on);
    the next epoch's worker cannot open it and the run stops naming the file; saved checkpoints stay."""
    data_root, llm_dir = make_assets(str(tmp_path))
    shard = osp.join(data_root, 'annotations', 'train-00001-of-00002.jsonl')
    cfg = Config.fromfile(write_config(str(tmp_path / 'cfg.py'), data_root, llm_dir, batch_size=4,
                                       max_iters=8, ckpt_interval=2))
    cfg.train_dataloader.num_workers = 1
    cfg.custom_hooks.append(dict(type='_DeleteShardHook', shard=shard, after_iter=2))
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match='train-00001-of-00002.jsonl'):
        runner.train()
    # 16 images / batch 4: epoch 0 finished on the open shard, epoch 1 could not start
    assert runner.iter == 4
    for it in (2, 4):
        assert is_loadable(osp.join(cfg.work_dir, f'iter_{it}.pth'))
    stop = describe_stop(FileNotFoundError(2, 'No such file or directory', shard), cfg.work_dir)
    assert 'a data file disappeared' in stop
