"""A tiny SigLIP trained on GranSynth's global captions: the pretrained encoder the toy chain starts from.

The paper initialises GranViT from SigLIP2, never from random weights. This stand-in is a Hugging Face
``SiglipModel`` (a tiny vision tower and text tower) trained with SigLIP's own pairwise sigmoid loss
(``SiglipModel(return_loss=True)``) on whole images and their global captions, then ``save_pretrained``-ed,
so it reaches GranViT through the same converter a real SigLIP2 checkpoint takes
(``tools/model_converters/siglip2_to_granvit.py``). Images go through the GranViT pre-processing
(``granvit_mm.core.image_input``), so the tower sees what it will see in stage 1.
"""
import math
import random
from typing import List, Sequence

import torch

from .fit import fit


def build_tiny_siglip(vocab_size: int, pad_id: int, image_size: int = 64, patch_size: int = 8,
                      hidden_size: int = 64, num_layers: int = 4, num_heads: int = 4,
                      intermediate_size: int = 256, text_layers: int = 2, max_text_len: int = 48,
                      position_init_std: float = 0.0, seed: int = 0):
    """A randomly initialised ``SiglipModel``; the vision tower matches ``GranViT(arch='tiny')``.

    ``position_init_std`` > 0 re-draws the vision position table with that std. Transformers' own init
    (0 here: ``1/sqrt(width)``, 0.125 at width 64) leaves the table far below the patch embedding, and the
    trained tower's last-layer tokens then hardly tell a read-out where the named box is (5% of the time,
    37-41% at 2.0; docs/toy_grounding.md).
    """
    from transformers import SiglipConfig, SiglipModel
    torch.manual_seed(seed)
    vision = dict(hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=num_layers,
                  num_attention_heads=num_heads, image_size=image_size, patch_size=patch_size)
    text = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                num_hidden_layers=text_layers, num_attention_heads=num_heads,
                max_position_embeddings=max_text_len, pad_token_id=pad_id)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    if position_init_std:
        with torch.no_grad():
            model.vision_model.embeddings.position_embedding.weight.normal_(0, position_init_std)
    # SigLIP's init (t' = log 10, b = -10); HF's (1, 0) collapsed to a constant logit here
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def encode_captions(tokenizer, captions: Sequence[str], max_len: int) -> torch.Tensor:
    """Fixed-length ids padded at the end, as SigLIP trains (its text tower pools the last position)."""
    pad = tokenizer.pad_token_id
    rows = [tokenizer.encode(c, add_special_tokens=False)[:max_len] for c in captions]
    return torch.tensor([r + [pad] * (max_len - len(r)) for r in rows], dtype=torch.long)


def train_siglip(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, steps: int = 600,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0, log_every: int = 100) -> List[float]:
    """SigLIP's sigmoid loss on random batches of (image, caption) pairs, AdamW with a cosine schedule."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    n = len(pixel_values)

    def loss_at(step):
        idx = torch.tensor(rng.sample(range(n), min(batch_size, n)))
        return model(input_ids=input_ids[idx], pixel_values=pixel_values[idx], return_loss=True).loss

    losses = fit(model.parameters(), loss_at, steps, lr, warmup_steps=50, weight_decay=0.05,
                 log_prefix='tiny_siglip', log_every=log_every)
    model.eval()
    return losses


@torch.no_grad()
def retrieval_accuracy(model, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> float:
    """Image -> text top-1 accuracy (%) among the given pairs: did the towers learn to match?"""
    model.eval()
    out = model(input_ids=input_ids, pixel_values=pixel_values)
    return float((out.logits_per_image.argmax(1) == torch.arange(len(input_ids))).float().mean() * 100)
