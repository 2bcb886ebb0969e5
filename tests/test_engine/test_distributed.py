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
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import DefaultSampler
from mmengine.registry import DATA_SAMPLERS
from mmengine.runner import Runner
from tiny_stage1 import ROOT, make_assets, read_probe, run_tool, write_config

from granvit_mm.datasets.epoch_sampler import EpochTaggedSampler
from granvit_mm.engine.checkpoint_io import latest_checkpoint
from granvit_mm.engine.dist import adapt_cfg_for_cpu
from granvit_mm.registry import MODELS

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


def initial_checkpoint(root, data_root, llm_dir):
    """One initial state for every run (the Runner and the FlexibleRunner draw the random init in another
    order), as a plain state dict that all strategies can load."""
    path = osp.join(root, 'init.pth')
    if not osp.exists(path):
        cfg = Config.fromfile(write_config(osp.join(root, 'init_cfg.py'), data_root, llm_dir))
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        torch.save(dict(state_dict=model.state_dict()), path)
    return path


@pytest.fixture(scope='module')
def runs(assets):
    root, data_root, llm_dir = assets
    init = initial_checkpoint(root, data_root, llm_dir)
    cfg2 = write_config(osp.join(root, 'cfg2.py'), data_root, llm_dir, batch_size=B, max_iters=STEPS,
                        extra=PROBE + f'load_from = {init!r}\n')
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
STATES_PROBE = PROBE.replace("dict(type='StepProbeHook')", "dict(type='StepProbeHook', save_states=True)")


def _strategy_run(assets, name, paper_cfg, steps, nproc=2, optim_wrapper=None, load_from=None, init_from=None,
                  **strategy_updates):
    """The variant's strategy on the tiny model, ``steps`` steps through tools/dist_train.sh.

    ``init_from``: a plain state dict the model starts from through its ``init_cfg`` (DeepSpeed's
    ``load_from`` reads only DeepSpeed checkpoint directories)."""
    root, data_root, llm_dir = assets
    strategy = Config.fromfile(paper_cfg).strategy.to_dict()
    strategy.update(strategy_updates)
    extra = STATES_PROBE + f"runner_type = 'FlexibleRunner'\nstrategy = {strategy!r}\n"
    if optim_wrapper:
        extra += f'optim_wrapper = dict(_delete_=True, **{optim_wrapper!r})\n'
    if load_from:
        extra += f'load_from = {load_from!r}\n'
    if init_from:
        extra += f"model['init_cfg'] = dict(type='Pretrained', checkpoint={init_from!r})\n"
    cfg = write_config(osp.join(root, f'{name}.py'), data_root, llm_dir, batch_size=B, max_iters=steps,
                       extra=extra)
    work = osp.join(root, name)
    proc = run_tool([cfg, '--work-dir', work], nproc=nproc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work


def assert_teacher_follows_every_step(work, steps, momentum=0.1, nproc=2):
    """Per rank: the teacher starts as the student and after step n is exactly
    ``(1 - m) teacher_{n-1} + m student_n`` (one EMA update per optimiser step); ranks bit-identical."""
    per_rank = [torch.load(osp.join(work, f'probe_rank{r}_states.pth'), weights_only=True)
                for r in range(nproc)]
    states = per_rank[0]
    assert len(states) == 1 + steps
    for other in per_rank[1:]:
        for mine, theirs in zip(states, other):
            for key in mine:
                assert torch.equal(mine[key], theirs[key]), key
    names = [k[len('teacher.module.'):] for k in states[0] if k.startswith('teacher.module.')]
    assert names and all('backbone.' + n in states[0] for n in names)
    for n in names:
        torch.testing.assert_close(states[0]['teacher.module.' + n], states[0]['backbone.' + n], rtol=0,
                                   atol=0)
    for step in range(1, steps + 1):
        prev, cur = states[step - 1], states[step]
        assert int(cur['teacher.steps']) == int(prev['teacher.steps']) + 1 == step + 1
        for n in names:
            t_prev, s_cur = prev['teacher.module.' + n], cur['backbone.' + n]
            if not t_prev.is_floating_point():
                continue
            expected = (1 - momentum) * t_prev + momentum * s_cur
            torch.testing.assert_close(cur['teacher.module.' + n], expected, rtol=0, atol=1e-6, msg=(step, n))
    last = states[-1]
    assert any(not torch.equal(last['teacher.module.' + n], last['backbone.' + n]) for n in names)


def test_variant_configs_use_flexible_runner_and_adapt_to_cpu():
    fsdp = Config.fromfile(FSDP_CFG)
    assert fsdp.runner_type == 'FlexibleRunner' and fsdp.strategy.type == 'granvit.GranViTFSDPStrategy'
    wrapper = fsdp.strategy.model_wrapper
    assert wrapper.use_orig_params  # the optimiser (and the teacher's step hook) see the student's parameters
    assert wrapper.ignored_modules == ['head.llm', 'teacher']
    assert wrapper.auto_wrap_policy.class_names == ['GranViT', 'GranViTBlock']
    assert fsdp.strategy.state_dict_cfg == 'full'  # one rank-0 checkpoint, loadable like a DDP one
    adapt_cfg_for_cpu(fsdp)
    assert fsdp.strategy.model_wrapper.device_id == 'cpu' and fsdp.env_cfg.dist_cfg.backend == 'gloo'
    ds = Config.fromfile(DS_CFG)
    assert ds.strategy.type == 'DeepSpeedStrategy' and ds.strategy.zero_optimization.stage == 2
    assert (ds.optim_wrapper.type == 'granvit.DeepSpeedTeacherOptimWrapper'
            and ds.optim_wrapper.optimizer.lr == 1e-5)
    assert ds.model == Config.fromfile(osp.join(ROOT, 'configs', 'granvit_pretrain.py')).model


def test_fsdp_units_are_the_student_vit_and_its_blocks():
    from granvit_mm.engine.fsdp import wrap_module_classes
    from granvit_mm.models.backbones.granvit import GranViT
    vit = GranViT(arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32), img_size=32,
                  patch_size=8)
    wrapped = [name for name, m in vit.named_modules() if wrap_module_classes(m, False, 0)]
    assert wrapped == ['', 'layers.0', 'layers.1']
    assert wrap_module_classes(vit.patch_embed, True, 0)  # recursion goes everywhere


def test_fsdp_variant_trains_like_ddp_and_moves_the_teacher(assets, runs):
    """2 CPU processes with MMEngine's FlexibleRunner and PyTorch FSDP (GranViTFSDPStrategy): the same
    losses and weights as the DDP run from the same start, and the EMA teacher updated every step."""
    root = assets[0]
    work = _strategy_run(assets, 'fsdp', FSDP_CFG, steps=STEPS, load_from=osp.join(root, 'init.pth'))
    assert_teacher_follows_every_step(work, STEPS)
    _, fsdp_rows = read_probe(work)
    _, ddp_rows = read_probe(runs['w2'])
    assert [r['samples'] for r in fsdp_rows] == [r['samples'] for r in ddp_rows]
    for row, ref in zip(fsdp_rows, ddp_rows):
        assert torch.isfinite(torch.tensor(row['loss']))
        assert row['loss'] == pytest.approx(ref['loss'], rel=2e-4), row['iter']
    assert fsdp_rows[0]['loss'] == pytest.approx(ddp_rows[0]['loss'], rel=1e-6)  # same start, same batch
    fsdp, ddp = _final(work), _final(runs['w2'])
    assert set(fsdp) == set(ddp)
    for key in fsdp:
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=1e-3, atol=1e-4, msg=key)


# Teeth for the strategies' gradient handling: plain SGD (an update proportional to the gradient; Adam would
# divide most of a scaling mistake away) behind a gradient-norm clip that binds at every step. Every step's
# update is then exactly ``-lr * max_norm * g / |g|`` with the GLOBAL gradient norm, so a strategy that
# clipped each shard by its own norm, scaled or averaged gradients differently, or skipped the clip, moves the
# weights elsewhere.
CLIP_STEPS, CLIP_LR, CLIP_NORM = 2, 10.0, 0.05
SGD = dict(type='SGD', lr=CLIP_LR)


def _updates(work, steps):
    """Per step, the update of the trainable weights (student ViT and projector) on rank 0."""
    states = torch.load(osp.join(work, 'probe_rank0_states.pth'), weights_only=True)
    assert len(states) == 1 + steps
    keys = [k for k in states[0]
            if k.startswith(('backbone.', 'projector.')) and states[0][k].is_floating_point()]
    assert any(k.startswith('projector.') for k in keys)
    return [torch.cat([(states[s][k] - states[s - 1][k]).flatten() for k in keys])
            for s in range(1, steps + 1)]


@pytest.fixture(scope='module')
def ddp_clipped(assets):
    """The reference: DDP (2 processes), SGD, clipped by the global norm, from the shared start."""
    root, data_root, llm_dir = assets
    init = initial_checkpoint(root, data_root, llm_dir)
    optim = dict(type='OptimWrapper', optimizer=SGD, clip_grad=dict(max_norm=CLIP_NORM))
    extra = STATES_PROBE + f'load_from = {init!r}\noptim_wrapper = dict(_delete_=True, **{optim!r})\n'
    cfg = write_config(osp.join(root, 'ddp_clip.py'), data_root, llm_dir, batch_size=B, max_iters=CLIP_STEPS,
                       extra=extra)
    proc = run_tool([cfg, '--work-dir', osp.join(root, 'ddp_clip')], nproc=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    updates = _updates(osp.join(root, 'ddp_clip'), CLIP_STEPS)
    for step in updates:  # the clip binds: every step moves the weights by exactly lr * max_norm
        assert float(step.norm()) == pytest.approx(CLIP_LR * CLIP_NORM, rel=1e-3)
    return updates


def assert_same_updates(updates, reference):
    for step, (mine, ref) in enumerate(zip(updates, reference)):
        assert float((mine - ref).norm() / ref.norm()) < 1e-3, step


@pytest.mark.slow
def test_fsdp_clips_by_the_global_norm_like_ddp(assets, ddp_clipped):
    """FSDP's clipping runs over all shards (GranViTFSDPStrategy): the same SGD updates as DDP's."""
    work = _strategy_run(assets, 'fsdp_clip', FSDP_CFG, steps=CLIP_STEPS,
                         load_from=osp.join(assets[0], 'init.pth'),
                         optim_wrapper=dict(type='OptimWrapper', optimizer=SGD,
                                            clip_grad=dict(max_norm=CLIP_NORM)))
    assert_same_updates(_updates(work, CLIP_STEPS), ddp_clipped)


# DeepSpeed is optional (requirements/scale.txt). CI installs it with `pip --target` into a directory of its
# own and names it here, so that only these runs see it (XTuner and transformers change paths when it is
# importable).
DEEPSPEED_DIR = os.environ.get('GRANVIT_DEEPSPEED_DIR', '')
HAS_DEEPSPEED = (importlib.util.find_spec('deepspeed') is not None
                 or osp.isdir(osp.join(DEEPSPEED_DIR, 'deepspeed')))

needs_deepspeed = pytest.mark.skipif(not HAS_DEEPSPEED, reason='DeepSpeed is not installed (optional: '
                                     'requirements/scale.txt, or GRANVIT_DEEPSPEED_DIR=<pip --target dir>; '
                                     'docs/distributed.md)')


def _see_deepspeed(monkeypatch):
    """The training subprocesses import DeepSpeed from GRANVIT_DEEPSPEED_DIR when it is set."""
    if DEEPSPEED_DIR:
        paths = (DEEPSPEED_DIR, os.environ.get('PYTHONPATH'))
        monkeypatch.setenv('PYTHONPATH', os.pathsep.join(p for p in paths if p))


@needs_deepspeed
def test_deepspeed_variant_moves_the_teacher_every_step(assets, monkeypatch):
    """2 CPU processes with DeepSpeed ZeRO-2 (fp32 on CPU): the teacher follows each DeepSpeed step."""
    _see_deepspeed(monkeypatch)
    work = _strategy_run(assets, 'deepspeed', DS_CFG, steps=3, bf16=dict(enabled=torch.cuda.is_available()),
                         optim_wrapper=dict(type='granvit.DeepSpeedTeacherOptimWrapper',
                                            optimizer=dict(type='AdamW', lr=1e-3)))
    _, rows = read_probe(work)
    assert [r['iter'] for r in rows] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in rows)
    assert_teacher_follows_every_step(work, 3)
    # the final checkpoint, a folder every rank wrote into, reached its name only once complete
    assert latest_checkpoint(work) == osp.join(work, 'iter_3.pth') and osp.isdir(latest_checkpoint(work))
    assert not [f for f in os.listdir(work) if 'granvit-tmp' in f]


@pytest.mark.slow
@needs_deepspeed
def test_deepspeed_clips_and_averages_like_ddp(assets, ddp_clipped, monkeypatch):
    """DeepSpeed ZeRO-2 (fp32 on CPU) with its gradient_clipping: the same SGD updates as DDP's."""
    _see_deepspeed(monkeypatch)
    work = _strategy_run(assets, 'deepspeed_clip', DS_CFG, steps=CLIP_STEPS, bf16=dict(enabled=False),
                         gradient_clipping=CLIP_NORM, config=dict(zero_allow_untested_optimizer=True),
                         init_from=osp.join(assets[0], 'init.pth'),
                         optim_wrapper=dict(type='granvit.DeepSpeedTeacherOptimWrapper', optimizer=SGD))
    assert_same_updates(_updates(work, CLIP_STEPS), ddp_clipped)
