"""PyTorch FSDP for stage 1 through MMEngine's FlexibleRunner: a wrap policy and a strategy that fit GranViT.

:func:`wrap_module_classes` makes the units by class name (configs cannot hold classes): the student ViT and
each of its blocks. The EMA teacher update gathers the student ViT (``FSDP.summon_full_params``), so the ViT
must be a unit of its own. The teacher and the frozen LLM stay out of FSDP (``ignored_modules``, see
configs/granvit_pretrain_fsdp.py for why).

:class:`GranViTFSDPStrategy` is MMEngine's ``FSDPStrategy`` plus what GranViT and CPU runs need:
- the whole model goes to the compute device before wrapping: FSDP moves only the modules it manages, so
  the ignored teacher and LLM would stay on the CPU of a GPU run;
- ``sync_module_states`` is done here for every parameter and buffer, ignored modules included (FSDP's own
  covers only what it manages, and PyTorch refuses it for CPU tensors);
- gradient clipping by norm goes through FSDP's ``clip_grad_norm_`` (the norm over all shards); MMEngine's
  optimiser wrapper would clip each rank's shard by its own local norm, so the ranks would scale their parts
  of one gradient differently;
- without CUDA, the optimiser state is gathered without ``offload_to_cpu``: torch's FSDP gathers each state
  (``exp_avg``, ``exp_avg_sq``) into one reused buffer and relies on the offload's ``.cpu()`` to copy it out,
  which on a CPU tensor is no copy, so every checkpoint held ``exp_avg_sq`` in place of ``exp_avg``
  (torch/distributed/fsdp/_optim_utils.py, ``_allgather_orig_param_states``); without the offload it clones;
- ``--resume`` works: MMEngine 0.10.6 calls ``FSDP.optim_state_dict_to_load(state_dict, model, optim)``, the
  argument order of torch < 2.0, which current torch rejects (``unhashable type: 'dict'``); here the optimiser
  state is loaded with torch's order ``(model, optim, optim_state_dict)``;
- without CUDA, ``device_id='cpu'``: MMEngine passes ``LOCAL_RANK`` (a CUDA index) and PyTorch's FSDP refuses
  a CPU-only run without a ``device_id`` ("FSDP needs a non-CPU accelerator device",
  torch/distributed/fsdp/_init_utils.py). So 2-process gloo runs work on CPU, nothing installed edited.
"""
import os
from functools import partial
from typing import Sequence

import torch
import torch.distributed as dist
from mmengine._strategy import FSDPStrategy
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import nn
from torch.distributed.fsdp import FullOptimStateDictConfig

from granvit_mm.registry import STRATEGIES

__all__ = ['wrap_module_classes', 'GRANVIT_FSDP_UNITS', 'GranViTFSDPStrategy']

GRANVIT_FSDP_UNITS = ('GranViT', 'GranViTBlock')


def wrap_module_classes(module: nn.Module, recurse: bool, nonwrapped_numel: int,
                        class_names: Sequence[str] = GRANVIT_FSDP_UNITS) -> bool:
    """FSDP's callable policy: recurse everywhere, wrap each module whose class name is in ``class_names``.

    Names rather than classes, so a config can say ``auto_wrap_policy=dict(type=
    'granvit_mm.engine.fsdp.wrap_module_classes', class_names=[...])``.
    """
    if recurse:
        return True
    return type(module).__name__ in set(class_names)


def _clip_sharded_grad_norm(model, params, max_norm: float, norm_type: float = 2.0, **kwargs) -> torch.Tensor:
    """``clip_grad_norm_``'s signature, FSDP's global norm (a collective: every rank clips at every step)."""
    return model.clip_grad_norm_(max_norm, norm_type)


@torch.no_grad()
def _broadcast_from_rank0(model: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (what DDP does when it wraps a model)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


@STRATEGIES.register_module()
class GranViTFSDPStrategy(FSDPStrategy):
    """``strategy=dict(type='GranViTFSDPStrategy', ...)``: MMEngine's ``FSDPStrategy`` arguments,
    unchanged."""

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        self.model_wrapper = dict(self.model_wrapper or dict(type='MMFullyShardedDataParallel'))
        if torch.cuda.is_available():
            device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', torch.cuda.current_device())))
        else:
            device = torch.device('cpu')
            if self.model_wrapper.get('device_id') is None:
                self.model_wrapper['device_id'] = 'cpu'
            osd = self.optim_state_dict_config  # set by FSDPStrategy.__init__
            if isinstance(osd, FullOptimStateDictConfig) and osd.offload_to_cpu:  # already on the CPU
                self.optim_state_dict_config = FullOptimStateDictConfig(rank0_only=osd.rank0_only,
                                                                        offload_to_cpu=False)
        model.to(device)
        if self.model_wrapper.pop('sync_module_states', False) and dist.is_initialized():
            _broadcast_from_rank0(model)
        return super()._wrap_model(model)

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """The full optimiser state of a checkpoint -> this rank's shard (torch >= 2.0 argument order)."""
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        optimizer = self.optim_wrapper.optimizer
        self.optim_wrapper.load_state_dict(FSDP.optim_state_dict_to_load(self.model, optimizer, state_dict))

    def build_optim_wrapper(self, optim_wrapper, model=None):
        built = super().build_optim_wrapper(optim_wrapper, model)
        wrappers = built.values() if isinstance(built, OptimWrapperDict) else [built]
        for wrapper in wrappers:
            clips_norm = getattr(wrapper, 'clip_func', None) is torch.nn.utils.clip_grad_norm_
            if isinstance(wrapper, OptimWrapper) and clips_norm:
                wrapper.clip_func = partial(_clip_sharded_grad_norm, model)
        return built
