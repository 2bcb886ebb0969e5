"""checkpoint_io's pieces one by one (test_faults.py runs them inside real training runs)."""
import errno
import os
import os.path as osp

import pytest
import torch

from granvit_mm.core.checkpoint_reader import checkpoint_iteration
from granvit_mm.engine import checkpoint_io as cio
from granvit_mm.engine.checkpoint_io import (AtomicLocalBackend, CheckpointSaveError, is_loadable,
                                             latest_checkpoint)

DEAD_PID = str(2 ** 22 + 1)  # above Linux's largest pid_max: no such process


def _save(path, value=1.0):
    torch.save(dict(state_dict=dict(w=torch.tensor([value]))), path)
    return str(path)


def test_put_writes_the_bytes_and_leaves_nothing_else(tmp_path):
    target = tmp_path / 'sub' / 'iter_1.pth'
    AtomicLocalBackend().put(b'abc', target)  # the folder is created
    assert target.read_bytes() == b'abc' and os.listdir(tmp_path / 'sub') == ['iter_1.pth']
    AtomicLocalBackend().put_text('é', tmp_path / 'sub' / 'last_checkpoint')
    assert (tmp_path / 'sub' / 'last_checkpoint').read_bytes() == 'é'.encode('utf-8')


def test_removed_file_is_gone_after_the_next_save_and_back_after_a_failed_one(tmp_path, monkeypatch):
    backend = AtomicLocalBackend()
    old = _save(tmp_path / 'iter_1.pth')
    backend.remove(old)
    assert not osp.exists(old) and osp.exists(osp.join(tmp_path, '.iter_1.pth' + cio._REMOVED_TAG))
    backend.put(open(_save(tmp_path / 'new'), 'rb').read(), tmp_path / 'iter_2.pth')
    os.unlink(tmp_path / 'new')
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth']  # the moved-aside file goes once a save worked

    backend.remove(osp.join(tmp_path, 'iter_2.pth'))
    real_replace = os.replace

    def full_disk(src, dst):
        if cio._TMP_TAG in str(src):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', full_disk)
    with pytest.raises(CheckpointSaveError) as err:
        backend.put(b'y', tmp_path / 'iter_3.pth')
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth']  # restored, no temporary file left
    msg = str(err.value)
    assert err.value.errno == errno.ENOSPC
    assert msg.startswith(f'[Errno 28] Could not save checkpoint {tmp_path / "iter_3.pth"}: no space left on '
                          'device (errno 28). Nothing was written under that name. ')
    assert f'The last complete checkpoint is {tmp_path / "iter_2.pth"} (kept: iter_2.pth).' in msg
    assert msg.endswith('continue with `--resume`.')


def test_save_error_names_the_cause_and_the_intact_checkpoint(tmp_path):
    good = _save(tmp_path / 'iter_4.pth')
    msg = cio._save_error('x.pth', OSError(errno.EACCES, 'Permission denied'), str(tmp_path), [])
    assert 'x.pth: Permission denied (errno 13)' in msg and f'The last complete checkpoint is {good}.' in msg
    assert '(kept' not in msg
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert 'No earlier checkpoint exists.' in cio._save_error('x.pth', OSError(5, 'EIO'), str(empty), [])


def test_stale_files_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    names = ['.iter_1.pth' + cio._REMOVED_TAG, '.iter_2.pth' + cio._TMP_TAG + DEAD_PID,
             '.iter_3.pth' + cio._TMP_TAG + str(os.getpid()), '.iter_4.pth' + cio._TMP_TAG + 'nopid']
    for name in names:
        (tmp_path / name).write_bytes(b'partial')
    AtomicLocalBackend().put(b'z', tmp_path / 'iter_5.pth')
    assert sorted(os.listdir(tmp_path)) == sorted([names[2], 'iter_5.pth'])


def test_alive():
    assert cio._alive(str(os.getpid())) and not cio._alive(DEAD_PID) and not cio._alive('x')


def test_is_loadable(tmp_path):
    good = _save(tmp_path / 'a.pth')
    assert is_loadable(good)
    (tmp_path / 'b.pth').write_bytes(open(good, 'rb').read()[:50])
    assert not is_loadable(str(tmp_path / 'b.pth'))
    torch.save(dict(obj=CheckpointSaveError), tmp_path / 'c.pth')  # a pickled class: not weights-only
    assert not is_loadable(str(tmp_path / 'c.pth')) and not is_loadable(str(tmp_path / 'missing.pth'))


def test_latest_checkpoint_order_and_pointer(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    for i in (2, 9, 10):
        _save(tmp_path / f'iter_{i}.pth', i)
    _save(tmp_path / 'epoch_3.pth')
    (tmp_path / 'iter_11.pth').write_bytes(b'truncated')
    (tmp_path / 'best.pth').write_bytes(b'')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')  # numeric, loadable, newest
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text(str(tmp_path / 'iter_2.pth') + '\n')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')  # the pointer wins when it loads
    pointer.write_text(str(tmp_path / 'iter_11.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'ds_ckpt').mkdir()  # DeepSpeed: a folder, taken only once its model states are in it
    pointer.write_text(str(tmp_path / 'ds_ckpt'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'ds_ckpt' / 'mp_rank_00_model_states.pt').write_bytes(b'')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'ds_ckpt')
    pointer.write_text('')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    assert checkpoint_iteration('a/iter_12.pth') == 12 and checkpoint_iteration('a/latest.pth') == -1


def test_same_iteration_newer_file_wins(tmp_path):
    older = _save(tmp_path / 'iter_5.pth')
    newer = _save(tmp_path / 'epoch_5.pth')
    os.utime(older, (1, 1))
    assert latest_checkpoint(str(tmp_path)) == newer


def test_alive_only_asks(monkeypatch):
    """Signal 0: a liveness check that sends nothing (a real signal would end the process it asks about)."""
    import subprocess
    child = subprocess.Popen(['sleep', '30'])
    try:
        assert cio._alive(str(child.pid))
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)  # still running
    finally:
        child.kill()
        child.wait()

    def not_mine(pid, sig):
        raise PermissionError(errno.EPERM, 'Operation not permitted')

    monkeypatch.setattr(os, 'kill', not_mine)
    assert cio._alive('1')  # another user's process is alive


def test_save_error_without_strerror_and_several_kept(tmp_path):
    kept = ['/w/iter_1.pth', '/w/iter_2.pth']
    msg = cio._save_error('x.pth', OSError('disk went away'), str(tmp_path), kept)
    assert 'x.pth: disk went away (errno None)' in msg and '(kept: iter_1.pth, iter_2.pth)' in msg


def test_restore_never_overwrites_a_file_written_since(tmp_path, monkeypatch):
    backend = AtomicLocalBackend()
    _save(tmp_path / 'iter_1.pth', 1.0)
    backend.remove(str(tmp_path / 'iter_1.pth'))
    _save(tmp_path / 'iter_1.pth', 2.0)  # written again by someone else meanwhile

    def broken(src, dst):
        raise OSError(errno.EIO, 'I/O error')

    monkeypatch.setattr(os, 'replace', broken)
    with pytest.raises(CheckpointSaveError):
        backend.put(b'y', tmp_path / 'iter_2.pth')
    assert float(torch.load(tmp_path / 'iter_1.pth', weights_only=True)['state_dict']['w']) == 2.0


def test_delete_takes_files_folders_and_links_but_not_what_a_link_points_to(tmp_path):
    folder = tmp_path / 'ds'
    (folder / 'sub').mkdir(parents=True)
    (folder / 'sub' / 'mp_rank_00_model_states.pt').write_bytes(b'x')
    target = tmp_path / 'target'
    target.mkdir()
    (target / 'keep.pt').write_bytes(b'x')
    os.symlink(target, tmp_path / 'link')
    (tmp_path / 'file').write_bytes(b'x')
    for name in ('ds', 'link', 'file', 'absent'):
        cio._delete(str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == ['target'] and os.listdir(target) == ['keep.pt']


def test_rmtree_moves_a_checkpoint_folder_aside_until_the_next_save(tmp_path, monkeypatch):
    backend = AtomicLocalBackend()
    old = tmp_path / 'iter_1.pth'
    old.mkdir()
    (old / 'mp_rank_00_model_states.pt').write_bytes(b'x')
    backend.rmtree(str(old))
    assert sorted(os.listdir(tmp_path)) == ['.iter_1.pth' + cio._REMOVED_TAG]
    real_replace = os.replace

    def full_disk(src, dst):
        if cio._TMP_TAG in str(src):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_replace(src, dst)

    with monkeypatch.context() as mp:
        mp.setattr(os, 'replace', full_disk)
        with pytest.raises(CheckpointSaveError, match=r'\(kept: iter_1.pth\)'):
            backend.put(b'y', tmp_path / 'iter_2.pth')
    assert os.listdir(old) == ['mp_rank_00_model_states.pt']  # back under its name
    backend.rmtree(old)
    backend.put(b'y', tmp_path / 'iter_2.pth')
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth']


def test_commit_renames_files_and_folders_onto_older_ones(tmp_path):
    tmp = tmp_path / '.iter_1.pth.tmp'
    tmp.write_bytes(b'new')
    cio._commit(str(tmp), str(tmp_path / 'iter_1.pth'))  # nothing under the final name yet
    assert (tmp_path / 'iter_1.pth').read_bytes() == b'new' and os.listdir(tmp_path) == ['iter_1.pth']
    tmp.write_bytes(b'newer')
    cio._commit(str(tmp), str(tmp_path / 'iter_1.pth'))  # onto a file
    assert (tmp_path / 'iter_1.pth').read_bytes() == b'newer' and os.listdir(tmp_path) == ['iter_1.pth']

    final = tmp_path / 'iter_2.pth'
    final.mkdir()
    (final / 'old_states.pt').write_bytes(b'old')
    stale = tmp_path / ('.iter_2.pth' + cio._REMOVED_TAG)  # what a killed commit left aside
    stale.mkdir()
    (stale / 'older_states.pt').write_bytes(b'older')
    tmp.mkdir()
    (tmp / 'mp_rank_00_model_states.pt').write_bytes(b'new')
    cio._commit(str(tmp), str(final))  # onto a folder, which a rename cannot replace
    assert os.listdir(final) == ['mp_rank_00_model_states.pt']
    assert sorted(os.listdir(tmp_path)) == ['iter_1.pth', 'iter_2.pth']


def test_atomic_strategy_save_writes_under_a_temp_name_and_renames(tmp_path, monkeypatch):
    calls = []

    def save_checkpoint(filename, *args, **kwargs):
        """A DeepSpeed-like strategy save: a folder of rank files."""
        calls.append((filename, args, kwargs))
        if '://' in filename:
            return 'remote'
        assert not osp.exists(tmp_path / 'iter_2.pth')  # the final name appears only once complete
        os.makedirs(filename)
        torch.save({'w': torch.ones(1)}, osp.join(filename, 'mp_rank_00_model_states.pt'))
        return 'saved'

    save = cio.atomic_strategy_save(save_checkpoint)
    assert save.__granvit_atomic__ is True and save.__name__ == 'save_checkpoint'
    assert cio.atomic_strategy_save(save) is save  # wrapped once only
    (tmp_path / ('.iter_2.pth' + cio._STRATEGY_TMP)).write_bytes(b'half-written by a killed run')
    AtomicLocalBackend().remove(_save(tmp_path / 'iter_1.pth'))  # max_keep_ckpts's removal
    assert save(str(tmp_path / 'iter_2.pth'), 1, save_optimizer=True) == 'saved'
    assert calls == [(str(tmp_path / ('.iter_2.pth' + cio._STRATEGY_TMP)), (1, ), dict(save_optimizer=True))]
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth']  # the old checkpoint and the stale temp gone
    assert cio.latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    assert save('s3://bucket/iter_3.pth') == 'remote' and calls[-1][0] == 's3://bucket/iter_3.pth'

    def no_space(filename, *args, **kwargs):
        os.makedirs(filename)
        raise OSError(errno.ENOSPC, 'No space left on device')

    AtomicLocalBackend().rmtree(str(tmp_path / 'iter_2.pth'))
    full = r'iter_4.pth: no space left on device .*\(kept: iter_2.pth\)'
    with pytest.raises(CheckpointSaveError, match=full):
        cio.atomic_strategy_save(no_space)(str(tmp_path / 'iter_4.pth'))
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth']  # the temp folder gone, the old one back


def test_install_atomic_strategy_save(tmp_path):
    class Strategy:
        def save_checkpoint(self, filename):
            with open(filename, 'wb') as f:
                f.write(b'ckpt')

    strategy = Strategy()
    cio.install_atomic_strategy_save(strategy)
    cio.install_atomic_strategy_save(strategy)  # a second install (resume, a second hook) changes nothing
    assert strategy.save_checkpoint.__granvit_atomic__
    inner = strategy.save_checkpoint.__wrapped__  # the bound method itself: wrapped once
    assert inner.__self__ is strategy and inner.__func__ is Strategy.save_checkpoint
    strategy.save_checkpoint(str(tmp_path / 'iter_1.pth'))
    assert os.listdir(tmp_path) == ['iter_1.pth'] and (tmp_path / 'iter_1.pth').read_bytes() == b'ckpt'
