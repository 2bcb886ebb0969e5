"""The vision-to-LLM projector: LLaVA-1.5's 2-layer MLP (Linear-GELU-Linear) over patch tokens."""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import nn

from granvit_mm.registry import MODELS

__all__ = ['VisionProjector']


@MODELS.register_module()
class VisionProjector(BaseModule):
    """Map (B, N, in_channels) visual tokens to (B, N, out_channels) LLM input embeddings.

    Same layout as XTuner's ``ProjectorModel`` with ``depth=2`` (``Linear-GELU-Linear``), so stage-1 weights
    drop into stage 2. ``in_channels``/``out_channels`` may be left None for the algorithm to fill from the
    backbone and the LLM.
    """

    def __init__(self, in_channels: Optional[int] = None, out_channels: Optional[int] = None,
                 hidden_channels: Optional[int] = None, bias: bool = True, init_cfg=None):
        super().__init__(init_cfg)
        if in_channels is None or out_channels is None:
            raise ValueError('VisionProjector needs in_channels and out_channels')
        hidden = hidden_channels or out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.model = nn.Sequential(nn.Linear(in_channels, hidden, bias=bias), nn.GELU(),
                                   nn.Linear(hidden, out_channels, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
