import uuid

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from granvit_mm.engine.hooks.weights_only_checkpoint import from_weights_only, to_weights_only


def test_round_trip_restores_mmengine_objects():
    buf = HistoryBuffer()
    for v in (1.0, 2.5, 4.0):
        buf.update(v)
    state = {'log_scalars': {'train/loss': buf},
             'runtime_info': {'arr': np.arange(3), 'f': np.float32(0.5), 'tags': {'a', 'a'}}}
    safe = to_weights_only(state)
    restored = from_weights_only(safe)
    assert isinstance(restored['log_scalars']['train/loss'], HistoryBuffer)
    np.testing.assert_allclose(restored['log_scalars']['train/loss'].data[0], [1.0, 2.5, 4.0])
    assert restored['log_scalars']['train/loss'].mean() == pytest.approx(2.5)
    np.testing.assert_array_equal(restored['runtime_info']['arr'], np.arange(3))
    assert restored['runtime_info']['f'] == 0.5 and type(restored['runtime_info']['f']) is float


class _ToyData(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)), target=torch.tensor(float(i)))


class _ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, inputs, target, mode='tensor'):
        pred = self.lin(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((pred - target) ** 2).mean())
        return pred


def _runner(work_dir, max_iters, resume):
    return Runner(
        model=_ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_ToyData(), sampler=dict(type='InfiniteSampler', shuffle=False),
                              batch_size=2, num_workers=0, collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='granvit.WeightsOnlyCheckpointHook')],
        resume=resume, default_scope='granvit',
        # a name of its own: Runners built within one second would share MMEngine's MessageHub (its losses)
        experiment_name=f'toy_{uuid.uuid4().hex}')


def test_runner_checkpoints_load_safely_and_resume(tmp_path):
    torch.manual_seed(0)
    runner = _runner(tmp_path, max_iters=2, resume=False)
    runner.train()
    ckpt = tmp_path / 'iter_2.pth'
    # The whole file passes torch's safe loader: no pickled MMEngine or numpy objects left.
    loaded = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert loaded['meta']['iter'] == 2
    weights = {k: v.clone() for k, v in runner.model.state_dict().items()}

    resumed = _runner(tmp_path, max_iters=4, resume=True)
    resumed.train()
    assert resumed.iter == 4
    assert torch.load(tmp_path / 'iter_4.pth', weights_only=True)['meta']['iter'] == 4
    hub = resumed.message_hub.get_scalar('train/loss')
    assert len(hub.data[0]) == 4  # the two logged losses of the first run came back with the resume
    assert any(not torch.equal(weights[k], v) for k, v in resumed.model.state_dict().items())
    # and it continues exactly: weights, optimiser moments, lr and logged losses of an uninterrupted run
    torch.manual_seed(0)
    straight = _runner(tmp_path / 'straight', max_iters=4, resume=False)
    straight.train()
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    mine, ref = resumed.optim_wrapper.optimizer, straight.optim_wrapper.optimizer
    assert mine.param_groups[0]['lr'] == ref.param_groups[0]['lr'] == pytest.approx(0.01)
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(mine.state[p][key], ref.state[q][key]), key
    np.testing.assert_array_equal(hub.data[0], straight.message_hub.get_scalar('train/loss').data[0])
