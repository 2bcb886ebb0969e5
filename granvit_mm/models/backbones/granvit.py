"""GranViT: the SigLIP/SigLIP2 vision transformer that GranViT trains, as an OpenMMLab backbone.

Architecture = SigLIP's vision tower without the attention-pool head: conv patch embedding (with bias),
learned absolute position embeddings on a square grid (no CLS token), pre-norm blocks (LayerNorm, fused biased
qkv, tanh-GELU MLP) and a final LayerNorm. ``tools/model_converters/siglip2_to_granvit.py`` maps HF weights
onto it exactly. The contract (``arch``, ``out_indices``, ``out_type``, ``frozen_stages``,
``get_layer_depth``) follows mmpretrain's ``VisionTransformer`` so its layer-decay optimizer constructor and
mmdet/mmseg configs work unchanged.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from granvit_mm.core.siglip_keys import resize_pos_embed, square_grid
from granvit_mm.registry import MODELS

from .pretrained_check import check_pretrained_init

OUT_TYPES = ('raw', 'featmap', 'avg_featmap')


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (ViTDet fine-tuning uses it); identity at eval or p == 0."""
    if p == 0. or not training:
        return x
    keep = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention through ``F.scaled_dot_product_attention``.

    q, k, v are one fused Linear (one GEMM instead of HF's three); the converter concatenates HF's weights.
    """

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class MLP(nn.Module):
    """fc1 -> tanh-GELU -> fc2, SigLIP's ``gelu_pytorch_tanh``."""

    def __init__(self, embed_dims: int, feedforward_channels: int):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.act = nn.GELU(approximate='tanh')
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x: torch.Tensor, hw: Tuple[int, int], window: int) -> Tuple[torch.Tensor, Tuple]:
    """(B, h*w, C) -> (B*nW, window*window, C), zero-padding the grid to a multiple of ``window``."""
    B, _, C = x.shape
    h, w = hw
    x = x.view(B, h, w, C)
    ph, pw = -h % window, -w % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    H, W = h + ph, w + pw
    x = x.view(B, H // window, window, W // window, window, C).transpose(2, 3)
    return x.reshape(-1, window * window, C), (B, H, W)


def window_unpartition(x: torch.Tensor, padded: Tuple, hw: Tuple[int, int], window: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`, dropping the padding."""
    B, H, W = padded
    C = x.shape[-1]
    x = x.view(B, H // window, W // window, window, window, C).transpose(2, 3).reshape(B, H, W, C)
    return x[:, :hw[0], :hw[1]].reshape(B, hw[0] * hw[1], C)


class GranViTBlock(nn.Module):
    """Pre-norm transformer block; ``window_size > 0`` makes it a ViTDet-style windowed-attention block."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 norm_eps: float = 1e-6,
                 drop_path_rate: float = 0.,
                 window_size: int = 0):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = SelfAttention(embed_dims, num_heads)
        self.ln2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = MLP(embed_dims, feedforward_channels)
        self.drop_path_rate = drop_path_rate
        self.window_size = window_size

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        y = self.ln1(x)
        if self.window_size > 0:
            y, padded = window_partition(y, hw, self.window_size)
            y = window_unpartition(self.attn(y), padded, hw, self.window_size)
        else:
            y = self.attn(y)
        x = x + drop_path(y, self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.ln2(x)), self.drop_path_rate, self.training)


def _arch(name: str, embed_dims: int, num_layers: int, num_heads: int, ffn: int) -> Dict[str, dict]:
    return {name: dict(embed_dims=embed_dims, num_layers=num_layers, num_heads=num_heads,
                       feedforward_channels=ffn)}


@MODELS.register_module()
class GranViT(BaseModule):
    """SigLIP2-architecture ViT backbone (no CLS token, no pooling head).

    Args:
        arch (str | dict): a key of :attr:`arch_zoo` ('tiny', 'b', 'l', 'so400m', 'g') or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads``, ``feedforward_channels``.
        img_size (int | tuple): size the position table is made for (native grid = img_size // patch_size).
            Any other input size works: the table is resized bicubically on the fly (and, on load, from a
            checkpoint made for another grid).
        patch_size (int): patch size. Inputs are cut like HF does (pixels beyond a whole patch are dropped).
        in_channels (int): image channels.
        out_indices (int | Sequence[int]): blocks whose output is returned; negative counts from the end.
            Blocks after the last requested one are not run (their parameters get no gradient).
        out_type (str): 'raw' (B, N, C) tokens, 'featmap' (B, C, H/p, W/p), 'avg_featmap' (B, C) token mean.
        final_norm (bool): apply the final LayerNorm (SigLIP's ``post_layernorm``) to the last block's output.
        norm_eps (float): LayerNorm epsilon (SigLIP: 1e-6).
        drop_path_rate (float): stochastic depth, linearly increasing over blocks.
        frozen_stages (int): -1 freezes nothing; N >= 0 freezes patch + position embeddings and the first N
            blocks (eval mode, ``requires_grad=False``), and the final norm when N == num_layers.
        with_cp (bool): gradient checkpointing of every block (``use_reentrant=False``) while training.
        window_size (int): > 0 turns blocks not in ``global_attn_indexes`` into windowed-attention blocks
            (ViTDet-style, for high-resolution dense tasks).
        global_attn_indexes (Sequence[int]): blocks that keep global attention when ``window_size > 0``.
        interpolate_mode (str) / interpolate_antialias (bool): how the position table is resized; bicubic
            without antialias matches HF SigLIP, 'bilinear' + antialias matches SigLIP2 NaFlex.
        init_cfg (dict | list, optional): e.g. ``dict(type='Pretrained', checkpoint='granvit.pth')``.
    """
    arch_zoo = {
        **_arch('tiny', 64, 4, 4, 256),
        **_arch('b', 768, 12, 12, 3072),
        **_arch('l', 1024, 24, 16, 4096),
        **_arch('so400m', 1152, 27, 16, 4304),
        **_arch('g', 1536, 40, 16, 6144),  # SigLIP2 giant-opt
    }
    arch_zoo.update(t=arch_zoo['tiny'], base=arch_zoo['b'], large=arch_zoo['l'], so=arch_zoo['so400m'],
                    giant=arch_zoo['g'])
    ARCH_KEYS = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 final_norm: bool = True,
                 norm_eps: float = 1e-6,
                 drop_path_rate: float = 0.,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 window_size: int = 0,
                 global_attn_indexes: Sequence[int] = (),
                 interpolate_mode: str = 'bicubic',
                 interpolate_antialias: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = patch_size
        self.patch_resolution = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}, got {out_type!r}')
        self.out_type = out_type
        self.out_indices = self._parse_indices(out_indices)
        self.final_norm = final_norm
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.interpolate_mode = interpolate_mode
        self.interpolate_antialias = interpolate_antialias

        self.patch_embed = nn.Conv2d(in_channels, self.embed_dims, patch_size, stride=patch_size)
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, self.embed_dims))
        rates = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        global_ids = set(self._parse_indices(global_attn_indexes))
        self.layers = nn.ModuleList(
            GranViTBlock(
                self.embed_dims,
                self.arch_settings['num_heads'],
                self.arch_settings['feedforward_channels'],
                norm_eps=norm_eps,
                drop_path_rate=rates[i],
                window_size=0 if i in global_ids else window_size) for i in range(self.num_layers))
        self.norm = nn.LayerNorm(self.embed_dims, eps=norm_eps) if final_norm else nn.Identity()
        self.register_load_state_dict_pre_hook(self._resize_pos_embed_on_load)
        self._default_init()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction
    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise KeyError(f'arch {arch!r} not in {sorted(self.arch_zoo)}')
            return dict(self.arch_zoo[arch.lower()])
        missing = self.ARCH_KEYS - set(arch)
        if missing:
            raise KeyError(f'custom arch misses {sorted(missing)}')
        return {k: int(arch[k]) for k in self.ARCH_KEYS}

    def _parse_indices(self, indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        """Block indices, negative ones counted from the end; out of range is an error, not a wrap."""
        indices = [indices] if isinstance(indices, int) else list(indices)
        parsed = []
        for i in indices:
            j = i + self.num_layers if i < 0 else i
            if not 0 <= j < self.num_layers:
                raise IndexError(f'block index {i} out of range for {self.num_layers} layers')
            parsed.append(j)
        return tuple(parsed)

    def init_weights(self) -> None:
        """MMEngine's init, after checking that a ``Pretrained`` checkpoint really fits (MMEngine would only
        warn and train from random weights)."""
        if not self._is_init:
            check_pretrained_init(self, self.init_cfg)
        super().init_weights()

    def _default_init(self):
        """Init for training from scratch (tests, tiny runs); a Pretrained init_cfg overwrites it."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.layers.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ position embeddings
    def grid_size(self, img_hw: Sequence[int]) -> Tuple[int, int]:
        """Patch grid (h, w) of an input of spatial size ``img_hw``."""
        return img_hw[0] // self.patch_size, img_hw[1] // self.patch_size

    def _resize(self, pos_embed: torch.Tensor, src_hw, dst_hw) -> torch.Tensor:
        return resize_pos_embed(pos_embed, src_hw, dst_hw, self.interpolate_mode, self.interpolate_antialias)

    def pos_embed_for(self, hw: Tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a (h, w) patch grid, resized from the native grid when they differ.

        Not cached: the resize is a few microseconds-milliseconds against a ViT forward, and a cache keyed on
        the parameter cannot see updates made through ``.data`` (e.g. an EMA teacher).
        """
        return self._resize(self.pos_embed, self.patch_resolution, hw)

    def _resize_pos_embed_on_load(self, module, state_dict, prefix, *args, **kwargs):
        """Load-time hook: resize a checkpoint's table made for another grid (HF (N, C) layout accepted)."""
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        ckpt = state_dict[name]
        if ckpt.ndim == 2:
            ckpt = ckpt.unsqueeze(0)
        if ckpt.shape[1] != module.pos_embed.shape[1]:
            ckpt = module._resize(ckpt, square_grid(ckpt.shape[1]), module.patch_resolution)
        state_dict[name] = ckpt

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C, H, W) images -> tuple of outputs, one per ``out_indices`` entry (see ``out_type``)."""
        x = self.patch_embed(x)
        hw = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2) + self.pos_embed_for(hw)
        last_needed = max(self.out_indices)
        outs = {}
        for i in range(last_needed + 1):
            layer = self.layers[i]
            if self.with_cp and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, hw, use_reentrant=False)
            else:
                x = layer(x, hw)
            if i == self.num_layers - 1:
                x = self.norm(x)
            if i in self.out_indices:
                outs[i] = self._format_output(x, hw)
        return tuple(outs[i] for i in self.out_indices)

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'featmap':
            return x.reshape(x.shape[0], hw[0], hw[1], x.shape[-1]).permute(0, 3, 1, 2)
        return x.mean(dim=1)

    # ------------------------------------------------------------------ training helpers
    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed] + list(self.layers[:self.frozen_stages])
        if self.frozen_stages >= self.num_layers:
            frozen.append(self.norm)
        self.pos_embed.requires_grad_(False)
        for m in frozen:
            m.eval()
            for param in m.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer depth for layer-wise lr decay, as mmpretrain's ``VisionTransformer.get_layer_depth``.

        Embeddings are depth 0, block i is depth i + 1, anything else (final norm, later modules) is the
        last depth; returns ``(layer_depth, num_layers + 2)``.
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name == 'pos_embed' or name.startswith('patch_embed'):
            depth = 0
        elif name.startswith('layers.'):
            depth = int(name.split('.')[1]) + 1
        else:
            depth = num_depths - 1
        return depth, num_depths
