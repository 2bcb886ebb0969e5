"""The one small training loop of the toy-asset builders (tiny LLM, its vision warm-up, tiny SigLIP)."""
import math
from typing import Callable, Iterable, List

import torch


def fit(params: Iterable[torch.nn.Parameter], loss_at: Callable[[int], torch.Tensor], steps: int, lr: float,
        warmup_steps: int = 0, weight_decay: float = 0.01, log_prefix: str = 'toy',
        log_every: int = 50) -> List[float]:
    """AdamW on ``loss_at(step)`` with a linear warm-up, a cosine decay and gradient clipping at 1."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    for step in range(steps):
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        for group in opt.param_groups:
            group['lr'] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = loss_at(step)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f'[{log_prefix}] step {step:4d}/{steps} loss {loss.item():.3f}', flush=True)
    return losses
