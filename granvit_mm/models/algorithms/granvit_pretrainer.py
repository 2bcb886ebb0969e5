"""GranViT stage-1 pretraining: ViT + projector trained through a frozen LLM, plus region self-distillation.

Follows mmpretrain's self-supervised algorithms and DINOv2: the EMA teacher lives inside the algorithm, and
``DistillScheduleHook`` only carries the schedule (it sets the distillation factor and calls
:meth:`GranViTPretrainer.update_teacher` after each optimiser step).

EMA convention: the paper writes ``theta_t <- alpha * theta_t + (1 - alpha) * theta_s`` with alpha = 0.9;
MMEngine's ``ExponentialMovingAverage`` takes ``momentum = 1 - alpha`` (``avg.lerp_(src, momentum)``), so the
paper's setting is ``momentum=0.1``.
"""
import copy
import os
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel, ExponentialMovingAverage

from granvit_mm.registry import MODELS
from ..utils.llm_loading import MissingPathError

__all__ = ['GranViTPretrainer']

VIT_HINT = ('Set `vit_checkpoint` in the config or pass '
            '`--cfg-options model.backbone.init_cfg.checkpoint=PATH`. '
            'Produce it from a Hugging Face SigLIP2 directory with '
            '`python tools/model_converters/siglip2_to_granvit.py /path/to/siglip2-large-patch16-512 PATH`.')

DEFAULT_PREPROCESSOR = dict(type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=False)


def check_pretrained(init_cfg: Optional[Union[dict, list]], hint: str = VIT_HINT) -> None:
    """Fail at build time when a ``Pretrained`` init_cfg points at a local file that is not there."""
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    for cfg in cfgs:
        if not cfg or cfg.get('type') != 'Pretrained':
            continue
        ckpt = cfg.get('checkpoint')
        if ckpt and '://' in str(ckpt):
            continue
        if not ckpt or not os.path.isfile(os.path.expanduser(str(ckpt))):
            raise MissingPathError(f'The ViT checkpoint (model.backbone.init_cfg.checkpoint) not found at '
                                    f'{ckpt!r}. {hint}')


@MODELS.register_module()
class GranViTPretrainer(BaseModel):
    """Stage-1 algorithm: student ViT -> projector -> frozen-LLM caption loss, + EMA-teacher distillation.

    Args:
        backbone: GranViT config; its last ``out_indices`` entry (``out_type='featmap'``) gives both the LLM's
            visual tokens and the dense map for RoIAlign.
        head: ``RegionARHead`` config (the frozen LLM).
        projector: ``VisionProjector`` config; channels default to the ViT width and the LLM width.
        distill_loss: ``RegionDistillLoss`` config, or None to train without self-distillation.
        ema_momentum: MMEngine EMA momentum (= 1 - paper alpha); the hook may override it per step.
        blind: zero the (normalised) image before the ViT, so visual tokens carry no image information
            (the baseline that tells how much the LLM guesses from the prompt alone).
        max_new_tokens: generation length in ``predict``.
        vit_path_hint: message when the backbone's Pretrained checkpoint is missing.
    """

    def __init__(self, backbone: dict, head: dict, projector: Optional[dict] = None,
                 distill_loss: Optional[dict] = dict(type='RegionDistillLoss'), ema_momentum: float = 0.1,
                 blind: bool = False, max_new_tokens: int = 32, vit_path_hint: str = VIT_HINT,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor or copy.deepcopy(DEFAULT_PREPROCESSOR),
                         init_cfg=init_cfg)
        check_pretrained(backbone.get('init_cfg'), vit_path_hint)
        backbone = dict(backbone, out_type='featmap')
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(head)
        projector = dict(projector or dict(type='VisionProjector'))
        widths = dict(in_channels=self.backbone.embed_dims, out_channels=self.head.hidden_size)
        for key, value in widths.items():
            if projector.get(key) is None:  # absent or None: derive from the ViT and LLM widths
                projector[key] = value
        self.projector = MODELS.build(projector)
        self.blind = blind
        self.max_new_tokens = max_new_tokens
        self.distill_loss = None if distill_loss is None else MODELS.build(distill_loss)
        self.distill_factor = 1.0  # set by DistillScheduleHook (0 before the start, then a linear warm-up)
        self.teacher = None
        if self.distill_loss is not None:
            self.teacher = ExponentialMovingAverage(self.backbone, momentum=ema_momentum)
            self.teacher.requires_grad_(False)
            self.teacher.eval()

    # ------------------------------------------------------------------------------------------- teacher
    def init_weights(self) -> None:
        """Init (e.g. load the Pretrained ViT), then start the teacher as an exact copy of the student."""
        super().init_weights()
        self.sync_teacher()

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """teacher <- student. Not called on resume: the runner loads the teacher from the checkpoint."""
        if self.teacher is None:
            return
        self.teacher.module.load_state_dict(self.backbone.state_dict())
        # MMEngine's EMA copies the source on its first update (steps == 0); we have just copied, so every
        # update from now on is the EMA formula.
        self.teacher.steps.fill_(1)

    @torch.no_grad()
    def update_teacher(self, momentum: Optional[float] = None) -> None:
        """teacher <- (1 - momentum) * teacher + momentum * student (called after each optimiser step)."""
        if self.teacher is None:
            return
        if momentum is not None:
            self.teacher.momentum = momentum
        self.teacher.update_parameters(self.backbone)

    def set_distill_factor(self, factor: float) -> None:
        self.distill_factor = float(factor)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher only ever runs inference
        return self

    # ------------------------------------------------------------------------------------------ forward
    def _images(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(inputs) if self.blind else inputs

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> the student's (B, C, h, w) dense map."""
        return self.backbone(self._images(inputs))[-1]

    def visual_embeds(self, featmap: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, h*w, C_llm) projected visual tokens, row-major like the ViT's tokens."""
        return self.projector(featmap.flatten(2).transpose(1, 2))

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List] = None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: torch.Tensor, data_samples: Sequence) -> Dict[str, torch.Tensor]:
        featmap = self.extract_feat(inputs)
        losses = self.head.loss(self.visual_embeds(featmap), data_samples)
        if self.distill_loss is not None:
            losses.update(self.distill_losses(inputs, featmap, data_samples))
        return losses

    def distill_losses(self, inputs: torch.Tensor, featmap: torch.Tensor,
                       data_samples: Sequence) -> Dict[str, torch.Tensor]:
        """``loss_distill`` = lambda * factor * MSE(teacher(crops) pooled, RoIAlign(student map)).

        Also logs the unweighted ``mse_distill``. Skipped (zero, graph kept for DDP) while the factor is 0
        or the batch has no boxes.
        """
        boxes = [getattr(ds, 'gt_bboxes', torch.zeros(0, 4)) for ds in data_samples]
        rois = self.distill_loss.rois(boxes).to(inputs.device)
        zero = featmap.sum() * 0.0
        if self.distill_factor <= 0 or rois.shape[0] == 0:
            return dict(loss_distill=zero, mse_distill=zero.detach())
        images = self._images(inputs)
        with torch.no_grad():
            crops = self.distill_loss.crops(images, rois)
            target = self.distill_loss.teacher_regions(self.teacher.module(crops)[-1])
        student = self.distill_loss.student_regions(featmap, rois, images.shape[-1])
        mse = self.distill_loss(student, target)
        weight = self.distill_loss.loss_weight * self.distill_factor
        return dict(loss_distill=mse * weight, mse_distill=mse.detach())

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: Sequence, max_new_tokens: Optional[int] = None):
        """Greedy answers to every task of every image, written to ``data_sample.pred_texts``."""
        embeds = self.visual_embeds(self.extract_feat(inputs))
        answers = self.head.predict(embeds, data_samples, max_new_tokens or self.max_new_tokens)
        for ds, texts in zip(data_samples, answers):
            ds.pred_texts = texts
        return data_samples
