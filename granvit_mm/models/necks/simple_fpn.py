"""ViTDet's simple feature pyramid: multi-scale maps from a plain ViT's single stride-p map.

A plain ViT (GranViT) has one feature map at stride p; detectors and UperNet want strides 4-32. ViTDet
(Li et al., 2022) builds them from the last map alone with deconvolutions / pooling, then a 1x1 and a 3x3 conv
per level. mmdet ships this neck only in its repository's ``projects/``, not the package, hence our copy.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from granvit_mm.registry import MODELS


@MODELS.register_module(name=['LN2d', 'LayerNorm2d'])
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ViTDet's neck/head norm); usable in mmcv ``norm_cfg``
    as ``dict(type='granvit.LN2d')``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


def _conv_norm(in_channels: int, out_channels: int, kernel: int, use_norm: bool) -> nn.Sequential:
    """Conv (bias only without norm) + optional LayerNorm2d."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not use_norm)
    return nn.Sequential(conv, LayerNorm2d(out_channels)) if use_norm else nn.Sequential(conv)


def _rescale(channels: int, scale: float, use_norm: bool) -> Tuple[nn.Module, int]:
    """The resampling stem of one level and its output channels (ViTDet's choices for 4x, 2x, 1x, 0.5x)."""
    if scale == 4.0:
        mid = channels // 2
        layers = [nn.ConvTranspose2d(channels, mid, 2, stride=2)]
        layers += [LayerNorm2d(mid)] if use_norm else []
        layers += [nn.GELU(), nn.ConvTranspose2d(mid, channels // 4, 2, stride=2)]
        return nn.Sequential(*layers), channels // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    if scale == 0.5:
        return nn.MaxPool2d(2, stride=2), channels
    raise ValueError(f'scale factor {scale} not supported (4.0, 2.0, 1.0, 0.5)')


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet).

    Args:
        in_channels (int): channels of the backbone map (GranViT ``embed_dims``).
        out_channels (int): channels of every output level.
        scale_factors (Sequence[float]): resampling of each level relative to the input map; ViTDet's
            (4, 2, 1, 0.5) turn a stride-16 map into strides 4, 8, 16, 32.
        num_outs (int, optional): number of outputs; extra levels beyond ``len(scale_factors)`` are made by
            stride-2 subsampling of the last one (RetinaNet / RPN's P6). Defaults to ``len(scale_factors)``.
        in_index (int): which backbone output to use when it returns several.
        use_norm (bool): LayerNorm2d after the convolutions, as ViTDet.
        init_cfg (dict | list, optional): mmengine init config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: Optional[int] = None,
                 in_index: int = -1,
                 use_norm: bool = True,
                 init_cfg=dict(type='Xavier', layer=['Conv2d', 'ConvTranspose2d'], distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        self.num_outs = num_outs or len(scale_factors)
        if self.num_outs < len(scale_factors):
            raise ValueError(f'num_outs {self.num_outs} < {len(scale_factors)} scale factors')
        self.in_index = in_index
        self.rescales = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for scale in scale_factors:
            rescale, channels = _rescale(in_channels, float(scale), use_norm)
            self.rescales.append(rescale)
            self.lateral_convs.append(_conv_norm(channels, out_channels, 1, use_norm))
            self.fpn_convs.append(_conv_norm(out_channels, out_channels, 3, use_norm))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        x = inputs[self.in_index] if isinstance(inputs, (list, tuple)) else inputs
        outs: List[torch.Tensor] = [
            fpn(lateral(rescale(x)))
            for rescale, lateral, fpn in zip(self.rescales, self.lateral_convs, self.fpn_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
