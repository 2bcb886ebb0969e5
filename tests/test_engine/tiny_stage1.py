"""Shared by the distributed / kill-resume / fault tests: a tiny stage-1 run (2-layer 32-wide ViT at 64 px,
the tiny Qwen2, a few GranSynth images) as a config file, plus probe hooks that subprocess runs import through
``custom_imports`` (this folder is put on their PYTHONPATH).
"""
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))
PY = sys.executable
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
NUM_VISUAL_TOKENS = 64  # 64 px / patch 8 = 8 x 8


def make_assets(root: str, num_train: int = 16) -> tuple:
    """GranSynth (``num_train`` train images, 64 px) and a tiny LLM; returns (data_root, llm_dir)."""
    from granvit_mm.toy.gran_synth import generate
    from granvit_mm.toy.tiny_llm import save_tiny_llm
    data_root = osp.join(root, 'gran_synth')
    generate(data_root, num_train=num_train, num_val=4, image_size=64, shards=2)
    llm_dir = save_tiny_llm(osp.join(root, 'tiny_llm'), vocab_size=400)
    return data_root, llm_dir


def write_config(path: str, data_root: str, llm_dir: str, batch_size: int = 2, max_iters: int = 4,
                 ckpt_interval: int = 1000, extra: str = '') -> str:
    """A tiny, deterministic stage-1 config: constant lr, distillation at full weight from step 0, no val."""
    text = f'''
_base_ = [{osp.join(ROOT, 'configs', 'granvit_pretrain_tiny.py')!r}]
model = dict(
    backbone=dict(arch=dict(_delete_=True, {', '.join(f'{k}={v}' for k, v in TINY_ARCH.items())}),
                  img_size=64, patch_size=8, init_cfg=None),
    head=dict(llm_path={llm_dir!r}),
    distill_loss=dict(crop_size=32, roi_size=4, max_regions=2))
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0,
    sampler=dict(type='granvit.EpochTaggedSampler', shuffle=True, seed=0),
    dataset=dict(data_root={data_root!r}))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, val_interval=100000)
param_scheduler = []
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval={ckpt_interval}, max_keep_ckpts=2))
randomness = dict(seed=0, deterministic=False)
log_level = 'WARNING'
{extra}
'''
    with open(path, 'w') as f:
        f.write(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args, timeout: int = 600, nproc: Optional[int] = None, env: Optional[dict] = None):
    """``tools/train.py ARGS`` in a subprocess (``nproc``: through tools/dist_train.sh)."""
    path = [HERE, ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(path),
                    PYTHON=PY, PYTHONHASHSEED='0', **(env or {}))
    if nproc:
        cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), args[0], str(nproc)] + list(args[1:])
        full_env['PORT'] = str(free_port())
    else:
        cmd = [PY, osp.join(ROOT, 'tools', 'train.py')] + list(args)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def answer_tokens(model, data_samples) -> int:
    """Answer tokens the caption loss averages over (shifted labels != IGNORE_INDEX)."""
    from granvit_mm.core.chat_format import IGNORE_INDEX
    batch = model.head.build_batch([ds.tasks for ds in data_samples], NUM_VISUAL_TOKENS)
    return int((batch['labels'][:, 1:] != IGNORE_INDEX).sum())


def distill_regions(model, data_samples) -> int:
    return int(model.distill_loss.rois([ds.distill_bboxes for ds in data_samples]).shape[0])


@HOOKS.register_module(force=True)
class StepProbeHook(Hook):
    """Writes ``probe_rank{r}.jsonl``: per iteration the rank's images, tasks, losses and the counts its
    means were taken over; and ``final_rank{r}.pth``: its model state after training."""
    priority = 'LOWEST'

    def __init__(self, probe_index: int = 0, save_states: bool = False):
        self.probe_index = probe_index
        # also ``states_rank{r}.pth``: ViTs and projector before training and after each iter
        self.save_states = save_states
        self.states = []

    def _path(self, runner, suffix):
        return osp.join(runner.work_dir, f'probe_rank{runner.rank}{suffix}')

    def _snapshot(self, runner):
        if self.save_states:
            state = full_state_dict(runner.model)
            self.states.append({k: v.detach().clone() for k, v in state.items()
                                if k.startswith(('backbone.', 'projector.', 'teacher.'))})

    def before_train(self, runner):
        self._snapshot(runner)
        dataset = runner.train_dataloader.dataset
        tasks = dataset[(0, self.probe_index)]['data_samples'].tasks
        with open(self._path(runner, '.jsonl'), 'a') as f:
            f.write(json.dumps(dict(kind='probe', rank=runner.rank, tasks=tasks)) + '\n')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = unwrap(runner.model)
        samples = data_batch['data_samples']
        row = dict(kind='iter', rank=runner.rank, iter=runner.iter,
                   samples=[int(ds.sample_idx) for ds in samples], tasks=[ds.tasks for ds in samples],
                   n_tokens=answer_tokens(model, samples), n_regions=distill_regions(model, samples),
                   **{k: float(v) for k, v in outputs.items()})
        with open(self._path(runner, '.jsonl'), 'a') as f:
            f.write(json.dumps(row) + '\n')
        self._snapshot(runner)

    def after_train(self, runner):
        torch.save(full_state_dict(runner.model), self._path(runner, '_final.pth'))
        if self.save_states:
            torch.save(self.states, self._path(runner, '_states.pth'))


def full_state_dict(model) -> dict:
    """The model's state on this rank, gathered whole under FSDP (a collective: call it on every rank)."""
    from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType
    if isinstance(model, FullyShardedDataParallel):
        with FullyShardedDataParallel.state_dict_type(model, StateDictType.FULL_STATE_DICT,
                                                      FullStateDictConfig(rank0_only=False)):
            return {k: v.clone() for k, v in model.state_dict().items()}
    return unwrap(model).state_dict()


@HOOKS.register_module(force=True)
class SigkillHook(Hook):
    """SIGKILLs its own process after iteration ``at_iter`` (no clean shutdown: nothing flushed, no hook)."""
    priority = 'LOWEST'  # after CheckpointHook has saved this iteration, if it saves

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)


def read_probe(work_dir: str, rank: int = 0):
    rows = [json.loads(line) for line in open(osp.join(work_dir, f'probe_rank{rank}.jsonl'))]
    return [r for r in rows if r['kind'] == 'probe'], [r for r in rows if r['kind'] == 'iter']


@HOOKS.register_module(force=True)
class SigkillDuringSaveHook(Hook):
    """SIGKILLs its own process in the middle of saving the checkpoint of iteration ``at_iter``: after the
    bytes went to the file, before it reached its final name (``os.fsync`` is the last call before that)."""
    priority = 'VERY_LOW'

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 == self.at_iter:
            def kill(fd):
                os.kill(os.getpid(), signal.SIGKILL)
            os.fsync = kill


def last_rows(rows):
    """Per iteration the last row written (a resumed run re-appends the iterations after its checkpoint)."""
    out = {}
    for row in rows:
        out[row['iter']] = row
    return [out[i] for i in sorted(out)]


@HOOKS.register_module(force=True)
class SigkillMidWriteHook(Hook):
    """SIGKILLs its own process half-way through writing the checkpoint of iteration ``at_iter``, whatever
    writes it (a FlexibleRunner strategy goes through MMEngine's ``save_checkpoint`` -> ``LocalBackend.put``):
    half the bytes are on disk under the path the writer chose."""
    priority = 'VERY_LOW'

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 != self.at_iter:
            return
        from mmengine.fileio import LocalBackend

        def put_half_then_die(backend, obj, filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        LocalBackend.put = put_half_then_die
