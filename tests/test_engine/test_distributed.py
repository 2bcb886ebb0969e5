"""Two-process stage-1 training on CPU (gloo) through tools/dist_train.sh, against single-process runs.

What a 2-process run with per-rank batch B must equal, exactly:
- data: rank r takes ``perm[r::2]`` of DefaultSampler's seeded permutation, so at step s the two ranks hold
  the same 2B images as a 1-process batch of 2B at step s, and every image gets the same tasks (the draw is
  seeded by (seed, epoch, image index), not by rank);
- loss: each rank averages its caption CE over ITS answer tokens (and its distillation MSE over its regions),
  and DDP averages the gradients over ranks. A 1-process batch of 2B averages over all tokens of the batch.
  So the 1-process loss is the token-weighted mean of the rank losses, ``sum(n_r L_r) / sum(n_r)``, not their
  plain mean; and the 2-process step equals a 1-process step on ``mean_r L_r``, which is what gradient
  accumulation over the ranks' micro-batches computes. Both relations are tested to float32 round-off;
- the EMA teacher moves after every real optimiser step on each rank from identical students: identical.
"""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import DefaultSampler
from mmengine.registry import DATA_SAMPLERS
from mmengine.runner import Runner

from granvit_mm.datasets.epoch_sampler import EpochTaggedSampler
from granvit_mm.engine.dist import adapt_cfg_for_cpu
from tiny_stage1 import ROOT, make_assets, read_probe, run_tool, write_config

PROBE = '''
custom_imports = dict(imports=['tiny_stage1'], allow_failed_imports=False)
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook'), dict(type='StepProbeHook')]
'''
B, STEPS = 2, 5  # 16 images, 2 ranks x 2: an epoch is 4 steps, so step 5 starts epoch 1


@DATA_SAMPLERS.register_module(force=True)
class RankInterleavedSampler(EpochTaggedSampler):
    """One process, the order in which 2 ranks of batch ``per_rank`` see the data: rank 0's batch of step s,
    then rank 1's, then step s+1 (for gradient accumulation over the ranks' micro-batches)."""

    def __init__(self, dataset, world: int = 2, per_rank: int = B, **kwargs):
        super().__init__(dataset, **kwargs)
        self.world, self.per_rank = world, per_rank

    def __iter__(self):
        epoch = int(self.epoch)
        perm = [int(i) for i in DefaultSampler.__iter__(self)]
        shards = [perm[r::self.world] for r in range(self.world)]
        for start in range(0, len(shards[0]), self.per_rank):
            for shard in shards:
                for idx in shard[start:start + self.per_rank]:
                    yield epoch, idx


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('dist'))
    return (root, ) + make_assets(root)


@pytest.fixture(scope='module')
def runs(assets):
    root, data_root, llm_dir = assets
    cfg2 = write_config(osp.join(root, 'cfg2.py'), data_root, llm_dir, batch_size=B, max_iters=STEPS, extra=PROBE)
    proc = run_tool([cfg2, '--work-dir', osp.join(root, 'w2')], nproc=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    def single(name, **cfg_options):
        cfg = Config.fromfile(cfg2)
        cfg.merge_from_dict(cfg_options)
        cfg.work_dir = osp.join(root, name)
        Runner.from_cfg(cfg).train()
        return cfg.work_dir

    w_big = single('w1_big', **{'train_dataloader.batch_size': 2 * B, 'train_cfg.max_iters': STEPS})
    w_acc = single('w1_acc', **{'train_dataloader.batch_size': B, 'train_cfg.max_iters': 2 * STEPS,
                                'optim_wrapper.accumulative_counts': 2,
                                'train_dataloader.sampler': dict(type='RankInterleavedSampler', shuffle=True,
                                                                 seed=0)})
    return dict(w2=osp.join(root, 'w2'), big=w_big, acc=w_acc)


def _final(work_dir, rank=0):
    return torch.load(osp.join(work_dir, f'probe_rank{rank}_final.pth'), weights_only=True)


def test_ranks_shard_the_data_and_draw_the_same_tasks(runs):
    probe0, iters0 = read_probe(runs['w2'], 0)
    probe1, iters1 = read_probe(runs['w2'], 1)
    _, big = read_probe(runs['big'])
    assert probe0[0]['tasks'] == probe1[0]['tasks']  # image 0, epoch 0, drawn in each rank
    assert [r['iter'] for r in iters0] == list(range(STEPS)) == [r['iter'] for r in big]
    tasks_1proc = {}
    for row in big:
        tasks_1proc.update({(row['iter'] >= 4, i): t for i, t in zip(row['samples'], row['tasks'])})
    for step, (r0, r1, one) in enumerate(zip(iters0, iters1, big)):
        assert not set(r0['samples']) & set(r1['samples']), 'ranks must not share images in a step'
        assert sorted(r0['samples'] + r1['samples']) == sorted(one['samples']), step
        for row in (r0, r1):  # same image, same epoch -> the same tasks as the 1-process run drew
            for i, t in zip(row['samples'], row['tasks']):
                assert t == tasks_1proc[(step >= 4, i)]


def test_first_step_loss_is_the_token_weighted_mean_of_the_rank_losses(runs):
    r0, r1 = read_probe(runs['w2'], 0)[1][0], read_probe(runs['w2'], 1)[1][0]
    one = read_probe(runs['big'])[1][0]
    assert one['n_tokens'] == r0['n_tokens'] + r1['n_tokens']
    caption = (r0['n_tokens'] * r0['loss_caption'] + r1['n_tokens'] * r1['loss_caption']) / one['n_tokens']
    assert one['loss_caption'] == pytest.approx(caption, rel=1e-6, abs=0)
    mse = (r0['n_regions'] * r0['mse_distill'] + r1['n_regions'] * r1['mse_distill']) / one['n_regions']
    assert one['mse_distill'] == pytest.approx(mse, rel=1e-6, abs=0)
    if r0['n_tokens'] != r1['n_tokens']:  # the plain rank mean is a different number, by design
        plain = (r0['loss_caption'] + r1['loss_caption']) / 2
        assert abs(plain - one['loss_caption']) > 1e-3 * abs(r0['loss_caption'] - r1['loss_caption'])


def test_every_step_equals_accumulating_the_rank_batches(runs):
    """DDP's mean of rank gradients == 1 process accumulating rank 0's and rank 1's batches (all steps)."""
    _, iters0 = read_probe(runs['w2'], 0)
    _, iters1 = read_probe(runs['w2'], 1)
    _, acc = read_probe(runs['acc'])
    assert len(acc) == 2 * STEPS
    for step in range(STEPS):
        for rank_row, micro in ((iters0[step], acc[2 * step]), (iters1[step], acc[2 * step + 1])):
            assert micro['samples'] == rank_row['samples'] and micro['tasks'] == rank_row['tasks']
            for key in ('loss_caption', 'mse_distill'):
                assert micro[key] == pytest.approx(rank_row[key], rel=2e-5, abs=1e-7), (step, key)
    two, ref = _final(runs['w2']), _final(runs['acc'])
    assert set(two) == set(ref)
    for key in two:
        torch.testing.assert_close(two[key], ref[key], rtol=1e-4, atol=1e-6, msg=key)


def test_teachers_stay_identical_across_ranks_and_move(runs):
    s0, s1 = _final(runs['w2'], 0), _final(runs['w2'], 1)
    teacher = [k for k in s0 if k.startswith('teacher.')]
    assert teacher and any(k.startswith('teacher.module.') for k in teacher)
    for key in s0:  # student, projector and teacher: bit for bit
        assert torch.equal(s0[key], s1[key]), key
    assert int(s0['teacher.steps']) == 1 + STEPS  # synced copy (1) + one EMA update per optimiser step
    moved = [k for k in teacher if k.startswith('teacher.module.') and s0[k].is_floating_point()
             and not torch.equal(s0[k], s0['backbone.' + k[len('teacher.module.'):]])]
    assert moved, 'the teacher must differ from the student after EMA steps'


# ------------------------------------------------------------------ FlexibleRunner variants (FSDP, DeepSpeed)
FSDP_CFG = osp.join(ROOT, 'configs', 'granvit_pretrain_fsdp.py')
DS_CFG = osp.join(ROOT, 'configs', 'granvit_pretrain_deepspeed.py')


def _strategy_run(assets, name, paper_cfg, nproc, optim_wrapper=None, **strategy_updates):
    """The variant's strategy on the tiny model, a few steps through tools/dist_train.sh."""
    root, data_root, llm_dir = assets
    variant = Config.fromfile(paper_cfg)
    strategy = variant.strategy.to_dict()
    strategy.update(strategy_updates)
    extra = PROBE + f"runner_type = 'FlexibleRunner'\nstrategy = {strategy!r}\n"
    if optim_wrapper:
        extra += f'optim_wrapper = dict(_delete_=True, **{optim_wrapper!r})\n'
    cfg = write_config(osp.join(root, f'{name}.py'), data_root, llm_dir, batch_size=B, max_iters=3, extra=extra)
    work = osp.join(root, name)
    proc = run_tool([cfg, '--work-dir', work], nproc=nproc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work


def test_variant_configs_use_flexible_runner_and_adapt_to_cpu():
    fsdp = Config.fromfile(FSDP_CFG)
    assert fsdp.runner_type == 'FlexibleRunner' and fsdp.strategy.type == 'FSDPStrategy'
    assert fsdp.strategy.model_wrapper.use_orig_params  # frozen LLM/teacher share units with trained params
    assert fsdp.strategy.state_dict_cfg == 'full'  # one rank-0 checkpoint, loadable like a DDP one
    adapt_cfg_for_cpu(fsdp)
    assert fsdp.strategy.model_wrapper.device_id is None and fsdp.env_cfg.dist_cfg.backend == 'gloo'
    ds = Config.fromfile(DS_CFG)
    assert ds.strategy.type == 'DeepSpeedStrategy' and ds.strategy.zero_optimization.stage == 2
    assert ds.optim_wrapper.type == 'DeepSpeedOptimWrapper' and ds.optim_wrapper.optimizer.lr == 1e-5
    assert ds.model == Config.fromfile(osp.join(ROOT, 'configs', 'granvit_pretrain.py')).model


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="PyTorch's FSDP (MMEngine's FSDPStrategy) refuses CPU-only runs")
def test_fsdp_variant_runs_a_few_steps(assets):
    work = _strategy_run(assets, 'fsdp', FSDP_CFG, nproc=min(2, torch.cuda.device_count()),
                         model_wrapper=dict(Config.fromfile(FSDP_CFG).strategy.model_wrapper.to_dict(),
                                            auto_wrap_policy=dict(
                                                type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
                                                min_num_params=1000)))
    _, rows = read_probe(work)
    assert [r['iter'] for r in rows] == [0, 1, 2]
    final = torch.load(osp.join(work, 'probe_rank0_final.pth'), weights_only=True)
    assert int(final['teacher.steps']) == 1 + 3, 'the EMA teacher must move under FSDP (docs/distributed.md)'


@pytest.mark.skipif(importlib.util.find_spec('deepspeed') is None,
                    reason='DeepSpeed is not installed (not in the pinned stack; docs/distributed.md)')
def test_deepspeed_variant_runs_a_few_steps(assets):
    work = _strategy_run(assets, 'deepspeed', DS_CFG, nproc=2, bf16=dict(enabled=torch.cuda.is_available()),
                         optim_wrapper=dict(type='DeepSpeedOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))
    _, rows = read_probe(work)
    assert [r['iter'] for r in rows] == [0, 1, 2]
    final = torch.load(osp.join(work, 'probe_rank0_final.pth'), weights_only=True)
    if int(final['teacher.steps']) == 1:
        pytest.xfail("known: under ZeRO the torch optimiser steps flat partitions, so GranViTPretrainer's step "
                     'post-hook never sees the student and the teacher does not move (seen with DeepSpeed '
                     '0.15.4 on CPU; docs/distributed.md#the-ema-teacher-under-sharding)')
    assert int(final['teacher.steps']) == 1 + 3
