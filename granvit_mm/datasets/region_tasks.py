"""Which tasks an image yields (stage 1: global caption + Bbox2Caption; stage 2: + Caption2Bbox).

Sampling is a pure function of a numpy Generator, which the transform seeds from (seed, epoch, sample_idx):
every dataloader worker and every DDP rank draws the same tasks for the same image. Building the task text
(prompts and box text) is separate, because boxes are only final after the geometric transforms.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from granvit_mm.core.prompts import (TASKS, bbox2caption_question, caption2bbox_answer, caption2bbox_question,
                                     global_caption_question)

TaskSpec = Tuple[str, int]  # (task name, region index; -1 for the global caption)
CAPTION_TURNS = ('first', 'last')  # where the global-caption turn goes in a conversation


def check_caption_turn(caption_turn: str) -> str:
    """Validate where the global-caption turn goes (``CAPTION_TURNS``)."""
    if caption_turn not in CAPTION_TURNS:
        raise ValueError(f'caption_turn must be one of {CAPTION_TURNS}, got {caption_turn!r}')
    return caption_turn


def check_task_mix(tasks: Dict[str, float]) -> Dict[str, float]:
    """Validate ``tasks`` = {task name: amount}; see ``draw_count`` for what an amount means."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f'unknown task(s) {sorted(unknown)}; expected some of {TASKS}')
    for name, amount in tasks.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise ValueError(f'tasks[{name!r}] must be a number >= 0, got {amount!r}')
    return dict(tasks)


def draw_count(amount: float, rng: np.random.Generator) -> int:
    """An amount ``v`` gives ``floor(v)`` tasks plus one more with probability ``v - floor(v)``.

    So ``bbox2caption=4`` is "up to 4", ``global_caption=0.5`` is "half of the images", and
    ``bbox2caption=2.5`` is 2 or 3 with equal odds.
    """
    whole = int(np.floor(amount))
    frac = float(amount) - whole
    return whole + int(frac > 0 and rng.random() < frac)


def _pick(candidates: Sequence[int], k: int, rng: np.random.Generator, mode: str) -> List[int]:
    k = min(k, len(candidates))
    if k <= 0:
        return []
    if mode == 'first':
        return list(candidates[:k])
    return [int(candidates[i]) for i in rng.choice(len(candidates), size=k, replace=False)]


def groundable_regions(captions: Sequence[str]) -> List[int]:
    """Regions whose caption is unique in the image: a Caption2Bbox question must have one right answer."""
    keys = [c.strip().lower() for c in captions]
    counts: Dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return [i for i, k in enumerate(keys) if counts[k] == 1]


def sample_task_specs(captions: Sequence[str],
                      has_global_caption: bool,
                      tasks: Dict[str, float],
                      rng: np.random.Generator,
                      mode: str = 'random',
                      unique_grounding: bool = True,
                      caption_turn: str = 'first') -> List[TaskSpec]:
    """Draw the (task, region) pairs of one image, in turn order: region tasks, and the global caption
    ``caption_turn`` ('first' or 'last') of them.

    Region tasks of one kind use distinct regions (sampled without replacement); ``mode='first'`` takes the
    first regions instead of random ones. The caption names every object with a coarse place, so region turns
    after it can answer from the text; ``'last'`` keeps them on the image (docs/toy_grounding.md, row 32).
    """
    check_caption_turn(caption_turn)
    specs: List[TaskSpec] = []
    if has_global_caption and draw_count(tasks.get('global_caption', 0), rng) > 0:
        specs.append(('global_caption', -1))
    all_regions = list(range(len(captions)))
    for name in ('bbox2caption', 'caption2bbox'):
        if name not in tasks:
            continue
        pool = groundable_regions(captions) if name == 'caption2bbox' and unique_grounding else all_regions
        specs.extend((name, r) for r in _pick(pool, draw_count(tasks[name], rng), rng, mode))
    if caption_turn == 'last' and specs and specs[0][0] == 'global_caption':
        specs.append(specs.pop(0))
    return specs


def pick_distill_regions(specs: Sequence[TaskSpec], num_regions: int, max_regions: int,
                         rng: np.random.Generator) -> List[int]:
    """Up to ``max_regions`` regions for self-distillation: the sampled tasks' regions first, then others."""
    chosen: List[int] = []
    for _, r in specs:
        if r >= 0 and r not in chosen:
            chosen.append(r)
    rest = [r for r in range(num_regions) if r not in chosen]
    if rest and len(chosen) < max_regions:
        chosen.extend(int(r) for r in rng.permutation(rest)[:max_regions - len(chosen)])
    return chosen[:max_regions]


def build_tasks(specs: Sequence[TaskSpec],
                boxes01: np.ndarray,
                captions: Sequence[str],
                global_caption: Optional[str],
                box_style: str = 'decimal3') -> List[dict]:
    """Task dicts of docs/CONTRACTS.md, with the paper's prompts and the one box formatter."""
    out = []
    for name, r in specs:
        if name == 'global_caption':
            out.append(
                dict(
                    task=name, question=global_caption_question(), answer=global_caption, box=None,
                    region=-1))
            continue
        box = [float(v) for v in boxes01[r]]
        if name == 'bbox2caption':
            q, a = bbox2caption_question(box, box_style), captions[r]
        elif name == 'caption2bbox':
            q, a = caption2bbox_question(captions[r]), caption2bbox_answer(box, box_style)
        else:
            raise ValueError(f'unknown task {name!r}')
        out.append(dict(task=name, question=q, answer=a, box=box, region=int(r)))
    return out
