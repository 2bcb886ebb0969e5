"""The visual tokens: the one tensor the projector reads, in stage 1, stage 2 and every export.

Definition (ours, the paper leaves it open; docs/method.md): the output of one transformer block -- by default
the last -- **before** the final LayerNorm, with **every** patch token kept (GranViT has no CLS token), on the
image pre-processed by :func:`granvit_mm.core.image_input.to_model_input`.

``layer`` counts like Hugging Face's ``hidden_states`` tuple, so every framework states it with the same
number:

- transformers' LLaVA: ``vision_feature_layer=layer``, ``vision_feature_select_strategy='full'`` on a
  ``SiglipVisionModel`` (``hidden_states[layer]``; ``hidden_states[-1]`` is the last block *without*
  ``post_layernorm``, which is why the final norm is not part of the tokens: LLaVA cannot select it);
- XTuner's LLaVA: ``visual_select_layer=layer`` (our ``GranViTLLaVAModel`` keeps token 0, which XTuner's
  ``LLaVAModel`` drops as CLIP's CLS);
- GranViT (stage 1): ``out_indices=granvit_out_index(layer)`` with ``final_norm=False``.

``hidden_states[0]`` is the patch + position embedding (no block run); GranViT cannot return it, so ``layer``
must not be 0. Negative layers count from the end in all three, so ``-1`` (the default) and ``-2``
(LLaVA-1.5's choice) mean the same block everywhere.
"""
from typing import Sequence

DEFAULT_VISUAL_LAYER = -1
HF_SELECT_STRATEGY = 'full'  # keep every token: GranViT has no CLS to drop


def check_layer(layer: int) -> int:
    """``layer`` as an int, or a clear error (0 is the embedding output, which no stage uses)."""
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f'visual layer must be an int (HF hidden_states index), got {layer!r}')
    if layer == 0:
        raise ValueError('visual layer 0 is the patch embedding output (hidden_states[0]); use a block: '
                         '-1 = last block (default), -2 = the one before, or 1..num_layers')
    return layer


def granvit_out_index(layer: int = DEFAULT_VISUAL_LAYER) -> int:
    """GranViT ``out_indices`` entry (0-based block) of HF ``hidden_states[layer]``."""
    layer = check_layer(layer)
    return layer if layer < 0 else layer - 1


def granvit_token_kwargs(layer: int = DEFAULT_VISUAL_LAYER) -> dict:
    """The GranViT backbone settings that make its (single) output the visual tokens."""
    return dict(out_indices=granvit_out_index(layer), final_norm=False)


def hf_llava_kwargs(layer: int = DEFAULT_VISUAL_LAYER) -> dict:
    """``LlavaConfig`` fields that select the same tokens from a ``SiglipVisionModel``."""
    return dict(vision_feature_layer=check_layer(layer), vision_feature_select_strategy=HF_SELECT_STRATEGY)


def select_visual_tokens(hidden_states: Sequence, layer: int = DEFAULT_VISUAL_LAYER):
    """(B, N, C) visual tokens from an HF vision tower's ``hidden_states`` (all N patch tokens kept)."""
    layer = check_layer(layer)
    if not -len(hidden_states) <= layer < len(hidden_states):
        raise IndexError(f'visual layer {layer} out of range for {len(hidden_states)} hidden states '
                         f'({len(hidden_states) - 1} blocks)')
    return hidden_states[layer]


def num_visual_tokens(img_size: int, patch_size: int) -> int:
    """Tokens per image: the full (img_size // patch_size)^2 grid (SigLIP drops pixels past whole patches)."""
    return (int(img_size) // int(patch_size)) ** 2
