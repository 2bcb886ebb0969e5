"""Frozen-encoder region probe: what a linear read-out of a region's RoIAligned features recovers.

The cleanest measure of fine-grained perception (no LLM, no detector head, nothing trained but one linear
layer): every region's dense features are pooled at its box, and a multinomial logistic regression per
attribute is fit on train regions and scored on held-out regions.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def region_features(featmap: torch.Tensor, boxes: Sequence[torch.Tensor], image_size: int,
                    roi_size: int = 2) -> torch.Tensor:
    """(B, C, h, w) dense maps + per-image (M_i, 4) input-pixel boxes -> (sum M_i, C * roi_size**2).

    Pooled exactly as self-distillation pools the student's map (``RegionDistillLoss.student_regions``).
    """
    from granvit_mm.models.losses import RegionDistillLoss
    pooling = RegionDistillLoss(roi_size=roi_size, max_regions=0)  # 0: every box
    rois = pooling.rois(boxes)
    if rois.shape[0] == 0:
        return featmap.new_zeros(0, featmap.shape[1] * roi_size * roi_size)
    return pooling.student_regions(featmap, rois, image_size).flatten(1)


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                          val_y: torch.Tensor, weight_decay: float = 1e-3, steps: int = 100) -> float:
    """Top-1 accuracy (%) on val of an L2-regularised softmax regression fit on standardised train features.

    Full-batch L-BFGS from zero weights: deterministic, so differences come from the features alone.
    """
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    xtr, xva = (train_x - mean) / std, (val_x - mean) / std
    classes = int(max(train_y.max(), val_y.max())) + 1
    linear = torch.nn.Linear(xtr.shape[1], classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(xtr), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((linear(xva).argmax(1) == val_y).float().mean() * 100)


def probe_attributes(train_x: torch.Tensor, train_labels: Dict[str, torch.Tensor], val_x: torch.Tensor,
                     val_labels: Dict[str, torch.Tensor], **kwargs) -> Dict[str, float]:
    """Accuracy per attribute and their mean (``'mean'``)."""
    out = {k: linear_probe_accuracy(train_x, train_labels[k], val_x, val_labels[k], **kwargs)
           for k in train_labels}
    out['mean'] = sum(out.values()) / len(out)
    return out
