"""PCA-to-RGB pictures of dense features, as DINOv2 shows them: the first three principal components of the
patch features, each scaled to [0, 255], one colour per patch, shown at the image's own aspect.

Images of one model share one PCA (fit on all their patches), so the same colour means the same feature
direction across them; two models are fitted separately (their feature spaces differ) and shown side by side.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .dense_features import DenseFeatures

__all__ = ['pca_components', 'pca_rgb', 'feature_view', 'side_by_side']


def pca_components(feats: torch.Tensor, k: int = 3) -> torch.Tensor:
    """(N, C) features -> (N, k) projections on the top-k principal components (signs made deterministic:
    each component's largest-magnitude loading is positive)."""
    x = feats.double()
    x = x - x.mean(0, keepdim=True)
    k_eff = min(k, x.shape[0], x.shape[1])
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    comps = vh[:k_eff]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    proj = x @ (comps * signs).T
    if k_eff < k:  # fewer patches or channels than colours: the rest stays mid-grey
        proj = torch.cat([proj, proj.new_zeros(proj.shape[0], k - k_eff)], 1)
    return proj.float()


def _to_uint8(proj: torch.Tensor, clip: float) -> torch.Tensor:
    lo = torch.quantile(proj, clip, dim=0, keepdim=True)
    hi = torch.quantile(proj, 1 - clip, dim=0, keepdim=True)
    scaled = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return (scaled * 255 + 0.5).to(torch.uint8)


def pca_rgb(features: Sequence[DenseFeatures], clip: float = 0.01) -> List[np.ndarray]:
    """One joint PCA over the image patches of ``features`` -> per image an (rows, cols, 3) uint8 array
    (padding-only patches excluded from the fit and the output). ``clip``: quantile clipped at each end."""
    maps = [f.image_features() for f in features]
    flat = torch.cat([m.flatten(1).T for m in maps], 0)
    colours = _to_uint8(pca_components(flat), clip)
    out, start = [], 0
    for m in maps:
        n = m.shape[1] * m.shape[2]
        out.append(colours[start:start + n].reshape(m.shape[1], m.shape[2], 3).numpy())
        start += n
    return out


def feature_view(features: Sequence[DenseFeatures], max_side: Optional[int] = 512) -> List[np.ndarray]:
    """:func:`pca_rgb` pictures enlarged (nearest, one block per patch) to the images' aspect, longer side
    ``max_side`` (None: the image's own size)."""
    views = []
    for f, rgb in zip(features, pca_rgb(features)):
        h, w = f.geometry.height, f.geometry.width
        if max_side:
            s = max_side / max(h, w)
            h, w = max(1, round(h * s)), max(1, round(w * s))
        views.append(np.asarray(Image.fromarray(rgb).resize((w, h), Image.NEAREST)))
    return views


def side_by_side(images: Sequence[np.ndarray], labels: Optional[Sequence[str]] = None, gap: int = 8,
                 label_height: int = 22) -> np.ndarray:
    """Place RGB uint8 images in a row on white, each with an optional label above it."""
    height = max(im.shape[0] for im in images) + (label_height if labels else 0)
    width = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    canvas = Image.new('RGB', (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, label_height - 8))
    x = 0
    for i, im in enumerate(images):
        top = label_height if labels else 0
        canvas.paste(Image.fromarray(im), (x, top))
        if labels:
            draw.text((x + 2, 2), str(labels[i]), fill=(0, 0, 0), font=font)
        x += im.shape[1] + gap
    return np.asarray(canvas)
