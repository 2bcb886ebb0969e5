"""Where things live in the checkpoints this project writes, and the tensors of a loaded one.

A stage-1 checkpoint (``tools/train.py``, MMEngine layout ``{'state_dict', 'meta', ...}``) holds the student
ViT under ``backbone.``, the EMA teacher under ``teacher.module.`` and the projector under ``projector.``;
converter outputs are bare GranViT state dicts. The exports, the inference API and the Pretrained-init check
all read them through these names.
"""
from typing import Dict, Mapping, Tuple

import torch

STAGE1_VIT_PREFIXES = {'student': 'backbone.', 'teacher': 'teacher.module.'}
PROJECTOR_PREFIX = 'projector.'


def split_checkpoint(obj: Mapping) -> Tuple[Dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a loaded checkpoint dict: MMEngine layout or a bare state dict."""
    state = obj.get('state_dict', obj)
    meta = obj.get('meta')
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return tensors, dict(meta) if isinstance(meta, dict) else {}


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
