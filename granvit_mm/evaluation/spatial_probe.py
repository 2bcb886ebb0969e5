"""Sub-patch probe: how precisely a frozen encoder's tokens say where a box edge runs inside their patch.

A detector's box precision (mAP at high IoU) needs each patch token to keep where, inside its patch, an object
starts and ends; a caption loss needs only what the object is. This probe reads that one thing with nothing
trained but a ridge regression: each patch token -> the occupancy of its ``cells x cells`` sub-cells by the
union of the image's object boxes, fit on train tokens, scored on val tokens of the patches that a box edge
crosses (inside and outside patches are trivial). Also the R^2 of a ridge read-out of the patch's own pixels.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F


def box_occupancy(boxes: Sequence[torch.Tensor], image_size: int, grid: int, cells: int) -> torch.Tensor:
    """Per-image (M_i, 4) input-pixel boxes -> (B, grid, grid, cells * cells) in [0, 1]: the fraction of each
    sub-cell of each patch covered by the union of the image's boxes (sampled at 4x4 points per sub-cell)."""
    res = grid * cells * 4
    step = image_size / res
    centres = (torch.arange(res, dtype=torch.float32) + 0.5) * step
    out = []
    for b in boxes:
        b = b.float().reshape(-1, 4)
        inside_x = (centres[None] >= b[:, :1]) & (centres[None] < b[:, 2:3])  # (M, res)
        inside_y = (centres[None] >= b[:, 1:2]) & (centres[None] < b[:, 3:4])
        mask = (inside_y[:, :, None] & inside_x[:, None, :]).any(0).float()  # (res, res)
        cell = F.avg_pool2d(mask[None, None], 4)[0, 0]  # (grid * cells, grid * cells)
        out.append(cell.view(grid, cells, grid, cells).permute(0, 2, 1, 3).reshape(grid, grid, cells * cells))
    return torch.stack(out)


def patch_pixels(images: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, grid, grid, 3 * p * p): each patch's own pixels, the other read-out target."""
    b, c, h, _ = images.shape
    p = h // grid
    return images.view(b, c, grid, p, grid, p).permute(0, 2, 4, 1, 3, 5).reshape(b, grid, grid, c * p * p)


def fit_ridge(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0):
    """Closed-form ridge on standardised features; returns ``predict(x) -> y``."""
    x, y = x.double(), y.double()
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    xs = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    reg = alpha * torch.eye(xs.shape[1], dtype=x.dtype)
    reg[-1, -1] = 0  # the bias is not shrunk
    w = torch.linalg.solve(xs.T @ xs + reg, xs.T @ y)

    def predict(v: torch.Tensor) -> torch.Tensor:
        return (torch.cat([(v.double() - mean) / std, torch.ones(len(v), 1, dtype=x.dtype)], 1) @ w).float()
    return predict


def r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Variance of ``target`` explained by ``pred``, pooled over outputs, x100."""
    return float((1 - (pred - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum()) * 100)


def crossed_by_edge(occ: torch.Tensor) -> torch.Tensor:
    """(N, cells^2) occupancies -> (N,) bool: patches with sub-cells both inside and outside the boxes."""
    return (occ.amin(1) < 0.5) & (occ.amax(1) > 0.5)


def position_accuracy(train_tokens: torch.Tensor, val_tokens: torch.Tensor, grid: int,
                      alpha: float = 1.0) -> float:
    """% of val tokens whose patch index a ridge read-out (one-hot targets, argmax) names exactly.

    Tokens come in raster order, ``grid * grid`` per image. An LLM that routes a box to its tokens by content
    needs the tokens to say where they are (its 1D RoPE alone is a weak pointer for a tiny LLM).
    """
    def index(n):
        return torch.arange(grid * grid).repeat(n // (grid * grid))
    target = F.one_hot(index(len(train_tokens)), grid * grid).float()
    pred = fit_ridge(train_tokens, target, alpha)(val_tokens)
    return float((pred.argmax(1) == index(len(val_tokens))).float().mean() * 100)


def spatial_probe(train_tokens: torch.Tensor, train_occ: torch.Tensor, val_tokens: torch.Tensor,
                  val_occ: torch.Tensor, train_pix: torch.Tensor = None, val_pix: torch.Tensor = None,
                  alpha: float = 1.0) -> Dict[str, float]:
    """Tokens (N, C) per patch and their targets -> edge-cell accuracy (%), edge R^2, and pixel R^2.

    The occupancy read-out is fit and scored on the patches a box edge crosses (``crossed_by_edge``): where
    inside the patch the edge runs. ``edge_cell_acc``: % of their sub-cells whose read-out (> 0.5) agrees with
    the truth (> 0.5); the pixel read-out is fit and scored on all patches.
    """
    tr_edge, edge = crossed_by_edge(train_occ), crossed_by_edge(val_occ)
    pred = fit_ridge(train_tokens[tr_edge], train_occ[tr_edge], alpha)(val_tokens[edge])
    out = dict(edge_cell_acc=float(((pred > 0.5) == (val_occ[edge] > 0.5)).float().mean() * 100),
               edge_r2=r2(pred, val_occ[edge]), edge_patches=int(edge.sum()))
    if train_pix is not None:
        out['pixel_r2'] = r2(fit_ridge(train_tokens, train_pix, alpha)(val_tokens), val_pix)
    return out
