"""Shared-prefix packing: K question-answer turns about one image in ONE causal-LM sequence.

Layout of one packed sequence (``segment_ids`` in brackets)::

    [prefix text + image tokens] (0) | turn 1 (1) | turn 2 (2) | ... | padding (-1)

The prefix (system + user start + visual tokens) goes through the LLM once for all K turns. Each turn's
tokens attend to the prefix and, causally, to their own turn only, and their position ids restart right
after the prefix. A causal LM therefore computes, for every turn, exactly the logits it would compute on
``prefix + turn`` alone, so the per-answer loss equals that of K separate sequences while the image tokens
are processed once instead of K times.
"""
from typing import Dict, List, Sequence, Tuple

import torch

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX

PAD_SEGMENT = -1


def pack_turns(prefix_ids: Sequence[int], num_image_tokens: int,
               turns: Sequence[Tuple[Sequence[int], Sequence[int]]],
               max_length: int = 0) -> Dict[str, List[int]]:
    """Lay out one image's turns after a shared prefix.

    Args:
        prefix_ids: text tokens before the image (system + user start).
        num_image_tokens: how many visual tokens replace the image placeholder.
        turns: per turn ``(ids, labels)`` of equal length; labels are IGNORE_INDEX where no loss is taken.
        max_length: drop trailing turns that would make the sequence longer (0: no limit); at least one
            turn is always kept, so the caller sees an over-long single turn rather than silent loss.

    Returns:
        dict of equal-length lists ``input_ids`` (image positions hold IMAGE_TOKEN_INDEX), ``labels``,
        ``position_ids``, ``segment_ids``.
    """
    prefix = list(prefix_ids) + [IMAGE_TOKEN_INDEX] * num_image_tokens
    p = len(prefix)
    out = dict(input_ids=list(prefix), labels=[IGNORE_INDEX] * p, position_ids=list(range(p)),
               segment_ids=[0] * p)
    for k, (ids, labels) in enumerate(turns):
        if len(ids) != len(labels):
            raise ValueError(f'turn {k}: {len(ids)} ids but {len(labels)} labels')
        if max_length and k > 0 and len(out['input_ids']) + len(ids) > max_length:
            break
        out['input_ids'] += list(ids)
        out['labels'] += list(labels)
        out['position_ids'] += list(range(p, p + len(ids)))
        out['segment_ids'] += [k + 1] * len(ids)
    return out


def collate_packed(seqs: Sequence[Dict[str, List[int]]], pad_id: int = 0) -> Dict[str, torch.Tensor]:
    """Right-pad packed sequences into (B, L) long tensors; padding has segment PAD_SEGMENT."""
    length = max(len(s['input_ids']) for s in seqs)
    fill = dict(input_ids=pad_id, labels=IGNORE_INDEX, position_ids=0, segment_ids=PAD_SEGMENT)
    batch = {}
    for key, value in fill.items():
        rows = [list(s[key]) + [value] * (length - len(s[key])) for s in seqs]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch


def shared_prefix_mask(segment_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive (B, 1, L, L) attention mask for packed sequences (0 = attend, dtype min = blocked).

    Query q may see key k iff k <= q and k is in the prefix (segment 0) or in q's own segment. Padding
    queries see only themselves, which keeps every softmax row finite. This is the 'inverted' 4D mask that
    transformers' Qwen2 (sdpa and eager) takes as is.
    """
    seg_q = segment_ids[:, :, None]
    seg_k = segment_ids[:, None, :]
    length = segment_ids.shape[1]
    pos = torch.arange(length, device=segment_ids.device)
    causal = pos[None, :, None] >= pos[None, None, :]
    allowed = causal & ((seg_k == 0) | (seg_k == seg_q)) & (seg_k != PAD_SEGMENT) & (seg_q != PAD_SEGMENT)
    allowed = allowed | torch.eye(length, dtype=torch.bool, device=segment_ids.device)[None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]
