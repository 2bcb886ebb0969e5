"""GranViTFSDPStrategy in one process: what it changes in MMEngine's FSDPStrategy (the 2-process runs that
show the effect on training are in test_distributed.py)."""
import functools

import pytest
import torch
import torch.distributed as dist
from tiny_stage1 import free_port
from torch import nn

from granvit_mm.engine.fsdp import GRANVIT_FSDP_UNITS, GranViTFSDPStrategy, _clip_sharded_grad_norm

SGD = dict(type='SGD', lr=0.1)


class _Recorder(nn.Module):
    """Stands in for an FSDP module: records ``clip_grad_norm_`` calls."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.calls = []

    def clip_grad_norm_(self, max_norm, norm_type=2.0):
        self.calls.append((max_norm, norm_type))
        return torch.tensor(7.0)


def test_norm_clipping_goes_through_the_fsdp_module():
    """clip_grad=dict(max_norm=...) becomes the FSDP module's own (global, all-shard) clip_grad_norm_."""
    model = _Recorder()
    wrapper = GranViTFSDPStrategy().build_optim_wrapper(
        dict(type='OptimWrapper', optimizer=SGD, clip_grad=dict(max_norm=0.5, norm_type=3.0)), model)
    assert isinstance(wrapper.clip_func, functools.partial)
    assert wrapper.clip_func.func is _clip_sharded_grad_norm
    model.lin.weight.grad = torch.ones(2, 2)
    model.lin.bias.grad = torch.ones(2)
    norm = wrapper._clip_grad()  # MMEngine's call: clip_func(params, **clip_grad)
    assert model.calls == [(0.5, 3.0)]
    assert float(_clip_sharded_grad_norm(model, [], 2.0)) == 7.0 and model.calls[-1] == (2.0, 2.0)
    assert norm is None or float(norm) == 7.0


def test_value_clipping_and_no_clipping_are_left_alone():
    model = _Recorder()
    by_value = GranViTFSDPStrategy().build_optim_wrapper(
        dict(type='OptimWrapper', optimizer=SGD, clip_grad=dict(type='value', clip_value=1.0)), model)
    assert by_value.clip_func is torch.nn.utils.clip_grad_value_
    plain = GranViTFSDPStrategy().build_optim_wrapper(dict(type='OptimWrapper', optimizer=SGD), model)
    assert not hasattr(plain, 'clip_func')


@pytest.fixture
def one_process_group(monkeypatch):
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    monkeypatch.setenv('LOCAL_RANK', '0')  # as tools/dist_train.sh
    dist.init_process_group('gloo', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_cpu_wrap_sets_the_device_and_syncs_states_itself(one_process_group):
    """Without CUDA: device_id='cpu' (FSDP refuses a CPU run without one), and ``sync_module_states`` is done
    by the strategy (PyTorch refuses it for CPU tensors), not passed on to FSDP."""
    from granvit_mm.models.backbones.granvit import GranViT
    torch.manual_seed(0)
    vit = GranViT(arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32), img_size=32,
                  patch_size=8)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    strategy = GranViTFSDPStrategy(model_wrapper=dict(
        type='MMFullyShardedDataParallel', use_orig_params=True, sync_module_states=True,
        auto_wrap_policy=dict(type='granvit_mm.engine.fsdp.wrap_module_classes')))
    wrapped = strategy._wrap_model(vit)
    assert strategy.model_wrapper['device_id'] == 'cpu' and 'sync_module_states' not in strategy.model_wrapper
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    assert isinstance(wrapped, FSDP)
    units = sorted(type(m.module).__name__ for m in wrapped.modules() if isinstance(m, FSDP))
    assert set(units) == set(GRANVIT_FSDP_UNITS) and units.count('GranViTBlock') == 2
    with FSDP.summon_full_params(wrapped):
        for k, v in wrapped.module.state_dict().items():
            assert torch.equal(v, before[k.replace('_fsdp_wrapped_module.', '')]), k


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_default_wrapper_and_a_given_device_are_kept(one_process_group):
    """No model_wrapper: MMEngine's MMFullyShardedDataParallel; a device_id the config gives is not replaced;
    no ``sync_module_states`` asked for, none needed."""
    from mmengine.model import MMFullyShardedDataParallel
    wrapped = GranViTFSDPStrategy()._wrap_model(nn.Sequential(nn.Linear(2, 2)))
    assert isinstance(wrapped, MMFullyShardedDataParallel)
    device = torch.device('cpu')
    strategy = GranViTFSDPStrategy(model_wrapper=dict(type='MMFullyShardedDataParallel', device_id=device))
    strategy._wrap_model(nn.Sequential(nn.Linear(2, 2)))
    assert strategy.model_wrapper['device_id'] is device


class _OneOptimiserPerModule:
    """A multi-optimiser constructor (``optim_wrapper=dict(constructor=..., <name>=<wrapper cfg>)``): one
    optim wrapper per named submodule, in MMEngine's OptimWrapperDict."""

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        # FSDPStrategy adds type='OptimWrapper' at the top level: not a submodule's
        self.cfgs = {name: cfg for name, cfg in optim_wrapper_cfg.items() if isinstance(cfg, dict)}

    def __call__(self, model):
        from mmengine.optim import OptimWrapperDict, build_optim_wrapper
        return OptimWrapperDict(**{name: build_optim_wrapper(getattr(model, name), cfg)
                                   for name, cfg in self.cfgs.items()})


class _TwoParts(_Recorder):

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 1)


def test_each_optimiser_of_an_optim_wrapper_dict_clips_through_the_fsdp_module():
    """Several optimisers (MMEngine's OptimWrapperDict): each one that clips by norm clips through the FSDP
    module's global norm, as a single OptimWrapper does; clipping by value is left alone."""
    from mmengine.optim import OptimWrapperDict
    model = _TwoParts()
    built = GranViTFSDPStrategy().build_optim_wrapper(dict(
        constructor=_OneOptimiserPerModule,
        lin=dict(type='OptimWrapper', optimizer=SGD, clip_grad=dict(max_norm=0.5, norm_type=3.0)),
        head=dict(type='OptimWrapper', optimizer=SGD, clip_grad=dict(type='value', clip_value=1.0))), model)
    assert isinstance(built, OptimWrapperDict) and sorted(built.keys()) == ['head', 'lin']
    assert isinstance(built['lin'].clip_func, functools.partial)
    assert built['lin'].clip_func.func is _clip_sharded_grad_norm and built['lin'].clip_func.args == (model,)
    assert built['head'].clip_func is torch.nn.utils.clip_grad_value_
    model.lin.weight.grad = torch.ones(2, 2)
    model.lin.bias.grad = torch.ones(2)
    built['lin']._clip_grad()
    assert model.calls == [(0.5, 3.0)]


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
@pytest.mark.parametrize('asked', [None, False, True])
def test_states_are_broadcast_only_when_asked(one_process_group, monkeypatch, asked):
    """rank 0's weights are broadcast (``sync_module_states``) only when the config asks: never by default,
    which would overwrite every other rank's weights."""
    import granvit_mm.engine.fsdp as fsdp
    calls = []
    monkeypatch.setattr(fsdp, '_broadcast_from_rank0', calls.append)
    wrapper = dict(type='MMFullyShardedDataParallel')
    if asked is not None:
        wrapper['sync_module_states'] = asked
    model = nn.Sequential(nn.Linear(2, 2))
    GranViTFSDPStrategy(model_wrapper=wrapper)._wrap_model(model)
    assert calls == ([model] if asked else [])


def test_states_are_not_broadcast_without_a_process_group(monkeypatch):
    """``sync_module_states=True`` in a run without a process group (nothing to sync with): no broadcast."""
    from mmengine._strategy import FSDPStrategy

    import granvit_mm.engine.fsdp as fsdp
    assert not dist.is_initialized()
    calls = []
    monkeypatch.setattr(fsdp, '_broadcast_from_rank0', calls.append)
    monkeypatch.setattr(FSDPStrategy, '_wrap_model', lambda self, model: model)  # FSDP needs a group
    model = nn.Sequential(nn.Linear(2, 2))
    strategy = GranViTFSDPStrategy(model_wrapper=dict(type='MMFullyShardedDataParallel',
                                                      sync_module_states=True))
    assert strategy._wrap_model(model) is model and calls == []
    assert 'sync_module_states' not in strategy.model_wrapper


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_cpu_gathers_the_full_optimiser_state_without_offload(monkeypatch):
    """On CPU a full optimiser state is gathered with ``offload_to_cpu=False`` (torch's gather reuses one
    buffer and counts on the offload's copy, a no-op on CPU tensors); ``rank0_only`` is kept, and other
    state-dict configs are left as configured."""
    from mmengine._strategy import FSDPStrategy
    from torch.distributed.fsdp import (FullOptimStateDictConfig, LocalOptimStateDictConfig,
                                        ShardedOptimStateDictConfig, StateDictType)
    monkeypatch.setattr(FSDPStrategy, '_wrap_model', lambda self, model: model)
    for rank0_only in (True, False):
        osd = FullOptimStateDictConfig(rank0_only=rank0_only, offload_to_cpu=True)
        strategy = GranViTFSDPStrategy(state_dict_cfg=dict(state_dict_type='FULL_STATE_DICT',
                                                           optim_state_dict_config=osd))
        strategy._wrap_model(nn.Linear(2, 2))
        new = strategy.optim_state_dict_config
        assert isinstance(new, FullOptimStateDictConfig)
        assert (new.offload_to_cpu, new.rank0_only) == (False, rank0_only)
    full = GranViTFSDPStrategy(state_dict_cfg='full')  # MMEngine's 'full': rank0_only and offload
    full._wrap_model(nn.Linear(2, 2))
    new = full.optim_state_dict_config
    assert (new.offload_to_cpu, new.rank0_only) == (False, True)
    for osd in (ShardedOptimStateDictConfig(offload_to_cpu=True), LocalOptimStateDictConfig()):
        strategy = GranViTFSDPStrategy(state_dict_cfg=dict(state_dict_type=StateDictType.SHARDED_STATE_DICT,
                                                           optim_state_dict_config=osd))
        strategy._wrap_model(nn.Linear(2, 2))
        assert strategy.optim_state_dict_config is osd
