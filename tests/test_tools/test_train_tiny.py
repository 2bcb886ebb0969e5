"""End to end: tools/train.py on the tiny config writes a checkpoint in a few iterations; --resume resumes."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    from granvit_mm.toy.tiny_llm import region_chat_corpus, save_tiny_llm, toy_records
    base = tmp_path_factory.mktemp('assets')
    data = str(base / 'gran_synth')
    generate(data, num_train=8, num_val=4)
    llm = save_tiny_llm(str(base / 'tiny_llm'), region_chat_corpus(toy_records(16)), vocab_size=400)
    return data, llm


def _train(work_dir, data, llm, max_iters, *extra):
    opts = [f'model.head.llm_path={llm}', 'model.backbone.init_cfg=None',
            f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}', f'test_dataloader.dataset.data_root={data}',
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
            f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=2',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
            'model.head.max_new_tokens=3', 'val_dataloader.dataset.indices=2']
    cmd = [sys.executable, 'tools/train.py', 'configs/granvit_pretrain_tiny.py', '--work-dir', str(work_dir),
           *extra, '--cfg-options', *opts]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_writes_checkpoint_and_resumes(assets, tmp_path):
    data, llm = assets
    log = _train(tmp_path, data, llm, 2)
    assert 'loss_caption' in log and 'loss_distill' in log
    assert re.search(r'bbox2caption/rouge_l: [\d.]+', log)
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']  # safe loader accepts it
    assert any(k.startswith('teacher.module.') for k in state)
    assert not any(k.startswith('head.llm.') for k in state)  # the frozen LLM is not saved
    log = _train(tmp_path, data, llm, 4, '--resume')
    assert re.search(r'resumed epoch: \d+, iter: 2', log), log[-3000:]
    assert (tmp_path / 'iter_4.pth').is_file()
    assert re.search(r'Iter\(train\) \[3/4\]', log) and not re.search(r'Iter\(train\) \[1/4\]', log)


def test_missing_tiny_llm_names_the_command(assets, tmp_path):
    data, _ = assets
    cmd = [sys.executable, 'tools/train.py', 'configs/granvit_pretrain_tiny.py', '--work-dir', str(tmp_path),
           '--cfg-options', f'model.head.llm_path={tmp_path / "no_llm"}', 'model.backbone.init_cfg=None',
           f'train_dataloader.dataset.data_root={data}']
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'tools/misc/make_tiny_llm.py --data-root data/gran_synth --out-dir data/tiny_llm' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_missing_tiny_siglip_names_the_command(assets, tmp_path):
    data, llm = assets
    cmd = [sys.executable, 'tools/train.py', 'configs/granvit_pretrain_tiny.py', '--work-dir', str(tmp_path),
           '--cfg-options', f'model.head.llm_path={llm}', f'train_dataloader.dataset.data_root={data}',
           f'model.backbone.init_cfg.checkpoint={tmp_path / "no_siglip.pth"}']
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert ('tools/misc/make_tiny_siglip.py --data-root data/gran_synth --out-dir data/tiny_siglip'
            in proc.stderr)


def test_missing_data_names_the_command(tmp_path):
    cmd = [sys.executable, 'tools/train.py', 'configs/granvit_pretrain_tiny.py', '--work-dir', str(tmp_path),
           '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path / "gran_synth"}']
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'python tools/misc/make_gran_synth.py --out-dir' in proc.stderr
