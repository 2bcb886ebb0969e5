"""Pure functions that turn a Hugging Face SigLIP / SigLIP2 vision tower state dict into a GranViT one.

No file IO here (``tools/model_converters/siglip2_to_granvit.py`` reads and writes), so the same filters serve
the converter, tests and any on-the-fly loading.

Key map (HF vision tower, prefix ``vision_model.`` stripped -> GranViT):

=====================================================  ===============================================
``embeddings.patch_embedding.{weight,bias}``           ``patch_embed.{weight,bias}`` (Conv2d, p x p)
``embeddings.position_embedding.weight`` (N, C)         ``pos_embed`` (1, N, C), row-major patch grid
``encoder.layers.i.layer_norm{1,2}.*``                  ``layers.i.ln{1,2}.*``
``encoder.layers.i.self_attn.{q,k,v}_proj.*``           ``layers.i.attn.qkv.*`` (concatenated q, k, v)
``encoder.layers.i.self_attn.out_proj.*``               ``layers.i.attn.proj.*``
``encoder.layers.i.mlp.fc{1,2}.*``                      ``layers.i.mlp.fc{1,2}.*``
``post_layernorm.*``                                    ``norm.*``
``head.*`` (attention-pool head)                        dropped: GranViT feeds patch tokens to the MLLM
=====================================================  ===============================================

SigLIP2 NaFlex towers (``Siglip2VisionModel``, transformers >= 4.49) embed patches with
``nn.Linear(3 * p * p, C)`` on patches flattened channels-last, i.e. in ``(row, col, channel)`` order
(``convert_image_to_patches`` in ``image_processing_siglip2.py`` reshapes (H, W, C) into
(h, p, w, p, C), transposes to (h, w, p, p, C) and flattens the last three). The equivalent Conv2d weight is
therefore ``W.reshape(C, p, p, 3).permute(0, 3, 1, 2)``. Their learned 16x16 position grid is resized per
image with bilinear interpolation and antialiasing (not bicubic as in SigLIP), so the converter sets
``interpolate_mode='bilinear', interpolate_antialias=True`` for them. Fixed-resolution SigLIP2 checkpoints
(``google/siglip2-*-patch16-224`` etc.) use SigLIP's architecture and convert like SigLIP.
"""
import math
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

PATCH_KEY = 'embeddings.patch_embedding.weight'
SUPPORTED_ACTS = ('gelu_pytorch_tanh', )

_LAYER_MAP = {
    'layer_norm1': 'ln1',
    'layer_norm2': 'ln2',
    'self_attn.out_proj': 'attn.proj',
    'mlp.fc1': 'mlp.fc1',
    'mlp.fc2': 'mlp.fc2',
}
_LAYER_RE = re.compile(r'^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$')


def resize_pos_embed(pos_embed: torch.Tensor,
                     src_hw: Sequence[int],
                     dst_hw: Sequence[int],
                     mode: str = 'bicubic',
                     antialias: bool = False) -> torch.Tensor:
    """Resize (1, H*W, C) grid position embeddings to (1, h*w, C).

    Defaults match HF SigLIP's ``interpolate_pos_encoding`` (bicubic, align_corners=False); SigLIP2 NaFlex
    uses ``mode='bilinear', antialias=True``. Interpolates in float32 because CPU bicubic/antialias kernels
    lack half-precision support, then casts back.
    """
    src_hw, dst_hw = tuple(int(s) for s in src_hw), tuple(int(s) for s in dst_hw)
    if src_hw == dst_hw:
        return pos_embed
    channels = pos_embed.shape[-1]
    assert pos_embed.shape[-2] == src_hw[0] * src_hw[1], \
        f'pos_embed has {pos_embed.shape[-2]} tokens, not a {src_hw} grid'
    grid = pos_embed.reshape(1, src_hw[0], src_hw[1], channels).permute(0, 3, 1, 2).float()
    align = {} if mode in ('nearest', 'area', 'nearest-exact') else dict(align_corners=False)
    grid = F.interpolate(grid, size=dst_hw, mode=mode, antialias=antialias, **align)
    return grid.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, dst_hw[0] * dst_hw[1], channels)


def square_grid(num_tokens: int) -> Tuple[int, int]:
    """SigLIP position tables are square grids; fail loudly on anything else."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f'{num_tokens} position embeddings do not form a square grid')
    return side, side


def strip_vision_prefix(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keep only the vision tower, prefix removed.

    Works for ``SiglipVisionModel`` / ``SiglipModel`` (``vision_model.``), their Siglip2 twins, and wrappers
    that add more (e.g. ``model.vision_tower.vision_model.``): the prefix is whatever precedes the patch
    embedding key.
    """
    hits = [k for k in state_dict if k.endswith(PATCH_KEY)]
    if len(hits) != 1:
        raise KeyError(f'expected one key ending with {PATCH_KEY!r}, found {hits}')
    prefix = hits[0][:-len(PATCH_KEY)]
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def is_naflex(vision_sd: Mapping[str, torch.Tensor]) -> bool:
    """SigLIP2 NaFlex embeds flattened patches with a Linear layer (2-D weight)."""
    return vision_sd[PATCH_KEY].ndim == 2


def linear_to_conv_patch_weight(weight: torch.Tensor, in_channels: int = 3) -> torch.Tensor:
    """(C, p*p*in) Linear weight on (row, col, channel)-flattened patches -> (C, in, p, p) Conv2d weight."""
    out_channels, fan_in = weight.shape
    patch = math.isqrt(fan_in // in_channels)
    if patch * patch * in_channels != fan_in:
        raise ValueError(f'cannot split {fan_in} inputs into {in_channels} x p x p')
    return weight.reshape(out_channels, patch, patch, in_channels).permute(0, 3, 1, 2).contiguous()


def convert_siglip_vision(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """HF SigLIP/SigLIP2 (vision or full) state dict -> GranViT state dict (see module docstring)."""
    sd = strip_vision_prefix(state_dict)
    out: Dict[str, torch.Tensor] = {}
    patch_w = sd[PATCH_KEY]
    out['patch_embed.weight'] = linear_to_conv_patch_weight(patch_w) if patch_w.ndim == 2 else patch_w
    out['patch_embed.bias'] = sd['embeddings.patch_embedding.bias']
    out['pos_embed'] = sd['embeddings.position_embedding.weight'].unsqueeze(0)
    out['norm.weight'] = sd['post_layernorm.weight']
    out['norm.bias'] = sd['post_layernorm.bias']
    for i in range(num_layers_in(sd)):
        src = f'encoder.layers.{i}.'
        for kind in ('weight', 'bias'):
            out[f'layers.{i}.attn.qkv.{kind}'] = torch.cat(
                [sd[f'{src}self_attn.{n}_proj.{kind}'] for n in 'qkv'], dim=0)
            for hf_name, name in _LAYER_MAP.items():
                out[f'layers.{i}.{name}.{kind}'] = sd[f'{src}{hf_name}.{kind}']
    leftover = [k for k in sd if not _is_known(k)]
    if leftover:
        raise KeyError(f'unexpected vision tower keys: {leftover[:8]}')
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def num_layers_in(vision_sd: Mapping[str, torch.Tensor]) -> int:
    ids = {int(m.group(1)) for m in map(_LAYER_RE.match, vision_sd) if m}
    return max(ids) + 1 if ids else 0


def _is_known(key: str) -> bool:
    if key.startswith(('embeddings.', 'post_layernorm.', 'head.')):
        return True
    return key.endswith('position_ids') or bool(_LAYER_RE.match(key))


def hf_vision_config(config: Optional[Mapping]) -> dict:
    """The vision part of a SiglipConfig/Siglip2Config dict (or the dict itself for a vision config)."""
    config = dict(config or {})
    return dict(config.get('vision_config') or {}) if 'vision_config' in config else config


def granvit_kwargs(vision_sd: Mapping[str, torch.Tensor], config: Optional[Mapping]) -> dict:
    """GranViT constructor kwargs (``arch`` dict, ``img_size``, ``patch_size``, ...) reproducing a tower.

    Shapes come from the weights (HF configs of full models may omit vision defaults); only the head count,
    LayerNorm eps and activation need the config (the HF ``config.json`` dict, required on purpose: the head
    count is not in the weights), with HF's SigLIP defaults for keys it lacks, as HF itself would build it.
    """
    vision_sd = strip_vision_prefix(vision_sd)
    cfg = hf_vision_config(config)
    act = cfg.get('hidden_act', 'gelu_pytorch_tanh')
    if act not in SUPPORTED_ACTS:
        raise ValueError(f'GranViT implements tanh-GELU only, the checkpoint uses {act!r}')
    pos = vision_sd['embeddings.position_embedding.weight']
    patch_w = vision_sd[PATCH_KEY]
    patch = math.isqrt(patch_w.shape[1] // 3) if patch_w.ndim == 2 else patch_w.shape[-1]
    grid = square_grid(pos.shape[0])
    embed_dims = pos.shape[1]
    num_heads = int(cfg.get('num_attention_heads', 12))
    if embed_dims % num_heads:
        raise ValueError(f'hidden size {embed_dims} is not divisible by {num_heads} heads')
    kwargs = dict(
        arch=dict(
            embed_dims=embed_dims,
            num_layers=num_layers_in(vision_sd),
            num_heads=num_heads,
            feedforward_channels=vision_sd['encoder.layers.0.mlp.fc1.weight'].shape[0]),
        img_size=grid[0] * patch,
        patch_size=patch,
        norm_eps=float(cfg.get('layer_norm_eps', 1e-6)),
    )
    if is_naflex(vision_sd):
        kwargs.update(interpolate_mode='bilinear', interpolate_antialias=True)
    return kwargs


def granvit_to_siglip_vision(state_dict: Mapping[str, torch.Tensor],
                             prefix: str = 'vision_model.') -> Dict[str, torch.Tensor]:
    """GranViT state dict -> HF ``SiglipVisionModel`` state dict (the inverse of ``convert_siglip_vision``).

    The patch embedding stays a Conv2d (SigLIP's layout, which ``SiglipVisionModel`` loads); the attention
    pool head is not produced, so load with ``vision_use_head=False``. Keys outside the ViT (e.g. a
    ``backbone.`` prefix) must be stripped by the caller.
    """
    sd = dict(state_dict)
    out: Dict[str, torch.Tensor] = {
        'embeddings.patch_embedding.weight': sd['patch_embed.weight'],
        'embeddings.patch_embedding.bias': sd['patch_embed.bias'],
        'embeddings.position_embedding.weight': sd['pos_embed'].reshape(-1, sd['pos_embed'].shape[-1]),
        'post_layernorm.weight': sd['norm.weight'],
        'post_layernorm.bias': sd['norm.bias'],
    }
    layers = {int(k.split('.')[1]) for k in sd if k.startswith('layers.')}
    for i in sorted(layers):
        dst = f'encoder.layers.{i}.'
        for kind in ('weight', 'bias'):
            q, k, v = sd[f'layers.{i}.attn.qkv.{kind}'].chunk(3, dim=0)
            for name, part in zip('qkv', (q, k, v)):
                out[f'{dst}self_attn.{name}_proj.{kind}'] = part
            for hf_name, name in _LAYER_MAP.items():
                out[f'{dst}{hf_name}.{kind}'] = sd[f'layers.{i}.{name}.{kind}']
    return {prefix + k: v.detach().clone().contiguous() for k, v in out.items()}
