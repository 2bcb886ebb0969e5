"""Region self-distillation (docs/method.md): MSE(teacher(crop), RoIAlign(student(image), box)).

The loss owns its geometry and its weight, so it can be tested against a known answer and the algorithm
only hands it the images, the student's dense map, the boxes and the teacher:
- crops: the normalised input image cut at each box and resized to ``crop_size`` in ONE batched
  ``roi_align`` (aligned=True, adaptive sampling_ratio=0: every output pixel averages the input pixels under
  it when downscaling, i.e. an antialiased resize, and samples bilinearly when upscaling);
- teacher target: the teacher's patch grid of each crop, average-pooled to ``roi_size`` x ``roi_size``;
- student: the student's dense map RoIAligned at the same boxes to ``roi_size`` (aligned=True, spatial scale
  = feature width / image width, i.e. 1 / patch_size).
"""
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from granvit_mm.registry import MODELS

__all__ = ['RegionDistillLoss', 'boxes_to_rois']


def boxes_to_rois(boxes: Sequence[torch.Tensor], max_regions: int = 0) -> torch.Tensor:
    """Per-image (M_i, 4) xyxy boxes -> (K, 5) rois ``[batch_idx, x1, y1, x2, y2]``, first ``max_regions``."""
    rois: List[torch.Tensor] = []
    for i, b in enumerate(boxes):
        b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
        if max_regions:
            b = b[:max_regions]
        b = torch.cat([b[:, :2], torch.maximum(b[:, 2:], b[:, :2])], dim=1)  # RoIAlign rejects x2 < x1
        rois.append(torch.cat([b.new_full((b.shape[0], 1), float(i)), b], dim=1))
    return torch.cat(rois) if rois else torch.zeros(0, 5)


def _roi_align(x: torch.Tensor, rois: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    from mmcv.ops import roi_align

    # mmcv's kernels take fp32/fp16; run in fp32 under bf16 autocast too.
    with torch.autocast(device_type=x.device.type, enabled=False):
        return roi_align(x.float(), rois.float().to(x.device), (size, size), scale, 0, 'avg', True)


@MODELS.register_module()
class RegionDistillLoss(nn.Module):
    """The region-level self-distillation loss, its crop/RoI geometry and its weight.

    Args:
        crop_size: side of the teacher's input crops (paper: unspecified; ours 224).
        roi_size: side of the compared region grids (ours 7).
        max_regions: boxes per image that are distilled (ours 4).
        loss_weight: lambda in ``L = L_caption + lambda * L_distill`` (paper: 1).
        feature_norm: None (paper: MSE of the raw features), 'layernorm': a parameter-free LayerNorm over
            channels on both sides before the MSE, which makes the loss blind to the feature scale. Raw MSE
            lets the student lower the loss by rescaling its features (e.g. its final LayerNorm gain) and the
            EMA teacher follows, a runaway seen on the tiny from-scratch ViT. 'centered_layernorm' first
            removes, per channel, the mean over all compared tokens of each side: a shared offset, which
            lowers the 'layernorm' loss by making every token alike, then earns nothing
            (docs/toy_grounding.md).
        teacher_input: what the teacher encodes. 'crop' (the paper's words): each box cut out and resized to
            ``crop_size``, its patch grid pooled. 'crop_in_place' (ours): each box cut out and kept where it
            is, at the image's size and scale, everything outside it set to the pad colour (0 after
            normalisation), the teacher's map RoIAligned at the box like the student's; the teacher still sees
            the region alone, but in the student's frame (the same position codes and patch scale). Neither
            keeps the tiny ViT's compared layer readable for grounding (docs/toy_grounding.md).
    """

    def __init__(self, crop_size: int = 224, roi_size: int = 7, max_regions: int = 4,
                 loss_weight: float = 1.0, feature_norm: Optional[str] = None, teacher_input: str = 'crop'):
        super().__init__()
        if teacher_input not in ('crop', 'crop_in_place'):
            raise ValueError(f"teacher_input must be 'crop' or 'crop_in_place', got {teacher_input!r}")
        self.teacher_input = teacher_input
        if feature_norm not in (None, 'layernorm', 'centered_layernorm'):
            raise ValueError("feature_norm must be None, 'layernorm' or 'centered_layernorm', "
                             f'got {feature_norm!r}')
        self.feature_norm = feature_norm
        self.crop_size = crop_size
        self.roi_size = roi_size
        self.max_regions = max_regions
        self.loss_weight = loss_weight

    def rois(self, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        return boxes_to_rois(boxes, self.max_regions)

    def crops(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images, (K, 5) rois in image pixels -> (K, 3, crop_size, crop_size)."""
        return _roi_align(images, rois, self.crop_size, 1.0).to(images.dtype)

    def crops_in_place(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images, (K, 5) rois -> (K, 3, S, S): image ``k`` keeps only the pixels whose centre
        lies in box ``k``; the rest is 0 (the normalised pad colour)."""
        h, w = images.shape[-2:]
        ys = torch.arange(h, device=images.device, dtype=torch.float32) + 0.5
        xs = torch.arange(w, device=images.device, dtype=torch.float32) + 0.5
        x1, y1, x2, y2 = (rois[:, i, None].float() for i in range(1, 5))
        inside = (((ys >= y1) & (ys <= y2))[:, :, None] & ((xs >= x1) & (xs <= x2))[:, None, :])
        return images[rois[:, 0].long()] * inside[:, None].to(images.dtype)

    def student_regions(self, featmap: torch.Tensor, rois: torch.Tensor, image_width: int) -> torch.Tensor:
        """(B, C, h, w) student map -> (K, C, roi_size, roi_size) at the boxes (image-pixel rois)."""
        return _roi_align(featmap, rois, self.roi_size, featmap.shape[-1] / image_width)

    def teacher_regions(self, teacher_featmap: torch.Tensor) -> torch.Tensor:
        """(K, C, hc, wc) teacher maps of the crops -> (K, C, roi_size, roi_size) by average pooling."""
        return F.adaptive_avg_pool2d(teacher_featmap.float(), self.roi_size)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_norm is None:
            return x.float()
        x = x.float()
        if self.feature_norm == 'centered_layernorm':
            x = x - x.mean(dim=(0, 2, 3), keepdim=True)  # the offset all compared tokens share, per channel
        return F.layer_norm(x.movedim(1, -1), (x.shape[1], )).movedim(-1, 1)

    def mse(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted MSE of (K, C, r, r) region grids (the target takes no gradient)."""
        return F.mse_loss(self._norm(student), self._norm(target.detach()))

    def forward(self, images: torch.Tensor, featmap: torch.Tensor, boxes: Sequence[torch.Tensor],
                teacher: Callable[[torch.Tensor], torch.Tensor], factor: float = 1.0
                ) -> Dict[str, torch.Tensor]:
        """``loss_distill`` = loss_weight * factor * MSE, and the unweighted ``mse_distill`` for the log.

        Args:
            images: (B, 3, S, S) normalised images the student saw.
            featmap: (B, C, h, w) the student's dense map of them.
            boxes: per image (M_i, 4) xyxy boxes in input pixels.
            teacher: crops (K, 3, c, c) -> the teacher's (K, C, hc, wc) dense maps; run without gradient.
            factor: the schedule's multiplier of ``loss_weight`` (0 skips the teacher forward).

        While the factor is 0 or the batch has no boxes both values are a zero that keeps the student's
        graph (DDP needs every parameter in it).
        """
        rois = self.rois(boxes).to(images.device)
        zero = featmap.sum() * 0.0
        if factor <= 0 or rois.shape[0] == 0:
            return dict(loss_distill=zero, mse_distill=zero.detach())
        with torch.no_grad():
            if self.teacher_input == 'crop_in_place':
                own = torch.cat([torch.arange(len(rois), device=rois.device, dtype=rois.dtype)[:, None],
                                 rois[:, 1:]], dim=1)  # crop k is teacher image k
                maps = teacher(self.crops_in_place(images, rois))
                target = self.student_regions(maps, own, images.shape[-1])
            else:
                target = self.teacher_regions(teacher(self.crops(images, rois)))
        mse = self.mse(self.student_regions(featmap, rois, images.shape[-1]), target)
        return dict(loss_distill=mse * (self.loss_weight * factor), mse_distill=mse.detach())
