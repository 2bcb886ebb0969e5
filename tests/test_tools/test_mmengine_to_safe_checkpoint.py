"""tools/model_converters/mmengine_to_safe_checkpoint.py: a plain MMEngine checkpoint (not loadable with
weights_only=True) becomes a safe one that resumes; a crafted file is refused without running its code."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'mmengine_to_safe_checkpoint.py')
sys.path.insert(0, osp.dirname(TOOL))
from mmengine_to_safe_checkpoint import convert  # noqa: E402


class _Data(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)), target=torch.tensor(float(i)))


class _Model(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, inputs, target, mode='tensor'):
        return dict(loss=((self.lin(inputs).squeeze(-1) - target) ** 2).mean())


def _runner(work_dir, max_iters, ours, **kwargs):
    return Runner(
        model=_Model(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, num_workers=0, collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=[dict(type='granvit.WeightsOnlyCheckpointHook')] if ours else [],
        default_scope='granvit', log_level='WARNING', **kwargs)


def test_plain_mmengine_checkpoint_converts_and_resumes(tmp_path):
    _runner(tmp_path / 'plain', 2, ours=False).train()
    src = str(tmp_path / 'plain' / 'iter_2.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(src, weights_only=True)  # what --resume meets without the conversion

    dst = str(tmp_path / 'safe.pth')
    out = subprocess.run([sys.executable, TOOL, src, dst], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    safe = torch.load(dst, weights_only=True)
    orig = torch.load(src, weights_only=False)
    for k, v in orig['state_dict'].items():
        assert torch.equal(safe['state_dict'][k], v)
    assert safe['meta']['iter'] == 2

    resumed = _runner(tmp_path / 'resumed', 4, ours=True, resume=True, load_from=dst)
    resumed.train()
    assert resumed.iter == 4
    buf = resumed.message_hub.get_scalar('train/loss')
    assert isinstance(buf, HistoryBuffer) and len(buf.data[0]) >= 2  # the plain run's history came back


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / 'pwned'
    src = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': {'x': _Evil(str(marker))}}, src)
    with pytest.raises(SystemExit, match=r'(?s)system.*--trust'):
        convert(src, str(tmp_path / 'out.pth'))
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


class _GetattrGadget:
    def __reduce__(self):  # getattr on something other than a HistoryBuffer statistic
        return getattr, (HistoryBuffer, '__init__')


def test_allow_listed_getattr_is_restricted(tmp_path):
    src = str(tmp_path / 'gadget.pth')
    torch.save({'meta': {'x': _GetattrGadget()}}, src)
    with pytest.raises(SystemExit, match='refusing getattr'):
        convert(src, str(tmp_path / 'out.pth'))
