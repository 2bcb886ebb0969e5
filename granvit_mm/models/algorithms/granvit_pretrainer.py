"""GranViT stage-1 pretraining: ViT + projector trained through a frozen LLM, plus region self-distillation.

Follows mmpretrain's self-supervised algorithms and DINOv2: the algorithm owns its EMA teacher and moves it
after every optimiser step that moved the student (a torch optimiser step post-hook, so gradient
accumulation, AMP's skipped steps and DDP wrappers need nothing else), with ``ema_momentum`` as the one
source of the momentum. ``DistillScheduleHook`` only carries the optional warm-up of the loss weight; a
config without it distils at full weight from the first step, as the paper does.

EMA convention: the paper writes ``theta_t <- alpha * theta_t + (1 - alpha) * theta_s`` with alpha = 0.9;
MMEngine's ``ExponentialMovingAverage`` takes ``momentum = 1 - alpha`` (``avg.lerp_(src, momentum)``), so the
paper's setting is ``momentum=0.1``.
"""
import contextlib
import copy
import os
import weakref
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel, ExponentialMovingAverage
from torch.optim.optimizer import register_optimizer_step_post_hook

from granvit_mm.core.image_input import PIXEL_MEAN, PIXEL_STD
from granvit_mm.core.paths import MissingPathError
from granvit_mm.core.visual_tokens import DEFAULT_VISUAL_LAYER, granvit_token_kwargs
from granvit_mm.registry import MODELS

from ..backbones.pretrained_check import pretrained_cfg

__all__ = ['GranViTPretrainer']

VIT_HINT = ('Set `vit_checkpoint` in the config or pass '
            '`--cfg-options model.backbone.init_cfg.checkpoint=PATH`. '
            'Produce it from a Hugging Face SigLIP2 directory with '
            '`python tools/model_converters/siglip2_to_granvit.py /path/to/siglip2-large-patch16-512 PATH`. '
            'For the tiny config, build the tiny SigLIP first: `python tools/misc/make_tiny_siglip.py '
            '--data-root data/gran_synth --out-dir data/tiny_siglip` (or set model.backbone.init_cfg=None).')

DEFAULT_PREPROCESSOR = dict(type='ImgDataPreprocessor', mean=list(PIXEL_MEAN), std=list(PIXEL_STD),
                            bgr_to_rgb=False)


def check_pretrained(init_cfg: Optional[Union[dict, list]], hint: str = VIT_HINT) -> None:
    """Fail at build time when a ``Pretrained`` init_cfg points at a local file that is not there."""
    cfg = pretrained_cfg(init_cfg)
    if cfg is None:
        return
    ckpt = cfg.get('checkpoint')
    if ckpt and '://' in str(ckpt):
        return
    if not ckpt or not os.path.isfile(os.path.expanduser(str(ckpt))):
        raise MissingPathError(f'The ViT checkpoint (model.backbone.init_cfg.checkpoint) not found at '
                               f'{ckpt!r}. {hint}')


@MODELS.register_module()
class GranViTPretrainer(BaseModel):
    """Stage-1 algorithm: student ViT -> projector -> frozen-LLM caption loss, + EMA-teacher distillation.

    Args:
        backbone: GranViT config; its output (``out_type='featmap'``) gives both the LLM's visual tokens and
            the dense map for RoIAlign. Its ``out_indices`` and ``final_norm`` come from ``visual_layer``.
        head: ``RegionARHead`` config (the frozen LLM).
        projector: ``VisionProjector`` config; channels default to the ViT width and the LLM width.
        distill_loss: ``RegionDistillLoss`` config, or None to train without self-distillation.
        ema_momentum: MMEngine EMA momentum (= 1 - paper alpha: alpha 0.9 -> 0.1), used after every
            optimiser step that moves the student.
        visual_layer: which block's output the visual tokens are, counted like HF ``hidden_states``
            (-1: the last block, before the final LayerNorm; every patch token kept). The one definition
            shared with stage 2 and the exports: :mod:`granvit_mm.core.visual_tokens`.
        blind: zero the (normalised) image before the ViT, so visual tokens carry no image information
            (the baseline that tells how much the LLM guesses from the prompt alone).
        vit_path_hint: message when the backbone's Pretrained checkpoint is missing.
    """

    def __init__(self, backbone: dict, head: dict, projector: Optional[dict] = None,
                 distill_loss: Optional[dict] = dict(type='granvit.RegionDistillLoss'),
                 ema_momentum: float = 0.1, visual_layer: int = DEFAULT_VISUAL_LAYER, blind: bool = False,
                 vit_path_hint: str = VIT_HINT,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor or copy.deepcopy(DEFAULT_PREPROCESSOR),
                         init_cfg=init_cfg)
        check_pretrained(backbone.get('init_cfg'), vit_path_hint)
        backbone = dict(backbone, out_type='featmap', **_token_settings(backbone, visual_layer))
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(head)
        # scoped: buildable from any default scope
        projector = dict(projector or dict(type='granvit.VisionProjector'))
        widths = dict(in_channels=self.backbone.embed_dims, out_channels=self.head.hidden_size)
        for key, value in widths.items():
            if projector.get(key) is None:  # absent or None: derive from the ViT and LLM widths
                projector[key] = value
        self.projector = MODELS.build(projector)
        self.blind = blind
        self.distill_loss = None if distill_loss is None else MODELS.build(distill_loss)
        self.distill_factor = 1.0  # DistillScheduleHook may warm it up; without the hook: full weight
        self.teacher = None
        if self.distill_loss is not None:
            if not 0.0 < ema_momentum <= 1.0:
                raise ValueError(f'ema_momentum must be in (0, 1], got {ema_momentum}')
            self.teacher = ExponentialMovingAverage(self.backbone, momentum=ema_momentum)
            self.teacher.requires_grad_(False)
            self.teacher.eval()
            _follow_optimizer_steps(self)

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
    def update_teacher(self) -> None:
        """teacher <- (1 - momentum) * teacher + momentum * student (after each optimiser step).

        Under FSDP the student is gathered for the update (a collective; the step post-hook runs on every rank
        alike) and the teacher is a plain replicated module (``ignored_modules``,
        configs/granvit_pretrain_fsdp.py).
        """
        if self.teacher is None:
            return
        with _gathered(self.backbone):
            student = _OriginalNames(self.backbone)
            _check_same_shapes(self.teacher.avg_parameters, student)
            self.teacher.update_parameters(student)

    def steps_student(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether ``optimizer`` updates the student ViT (so its step must move the teacher)."""
        trainable = {id(p) for p in self.backbone.parameters() if p.requires_grad}
        return any(id(p) in trainable for group in optimizer.param_groups for p in group['params'])

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
        """``loss_distill`` and ``mse_distill`` of :class:`RegionDistillLoss` at the samples' distill
        boxes."""
        boxes = [getattr(ds, 'distill_bboxes', torch.zeros(0, 4)) for ds in data_samples]
        return self.distill_loss(self._images(inputs), featmap, boxes, self._teacher_featmap,
                                 self.distill_factor)

    def _teacher_featmap(self, crops: torch.Tensor) -> torch.Tensor:
        return self.teacher.module(crops)[-1]

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: Sequence, max_new_tokens: Optional[int] = None):
        """Greedy answers to every task of every image, written to ``data_sample.pred_texts``.

        ``max_new_tokens`` defaults to the head's.
        """
        embeds = self.visual_embeds(self.extract_feat(inputs))
        answers = self.head.predict(embeds, data_samples, max_new_tokens)
        for ds, texts in zip(data_samples, answers):
            ds.pred_texts = texts
        return data_samples


def _token_settings(backbone: dict, visual_layer: int) -> dict:
    """The backbone's ``out_indices``/``final_norm`` for ``visual_layer``; a config that sets them otherwise
    would train tokens that stage 2 and the exports cannot reproduce, so it is an error."""
    settings = granvit_token_kwargs(visual_layer)
    given = {k: backbone[k] for k in settings if k in backbone}
    if isinstance(given.get('out_indices'), (list, tuple)) and len(given['out_indices']) == 1:
        given['out_indices'] = given['out_indices'][0]
    clash = {k: v for k, v in given.items() if v != settings[k]}
    if clash:
        raise ValueError(f'backbone {clash} contradicts visual_layer={visual_layer} ({settings}): set the '
                         'visual tokens with model.visual_layer only (granvit_mm/core/visual_tokens.py)')
    return settings


_FSDP_PREFIX = '_fsdp_wrapped_module.'


class _OriginalNames:
    """``module`` as MMEngine's EMA reads it (``named_parameters``, ``buffers``), under the names the teacher
    was built with: FSDP inserts ``_fsdp_wrapped_module.`` into the names of the modules it wraps."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def named_parameters(self):
        return ((name.replace(_FSDP_PREFIX, ''), p) for name, p in self.module.named_parameters())

    def buffers(self):
        return self.module.buffers()


def _gathered(backbone: torch.nn.Module):
    """The whole student on every rank when it is an FSDP unit (its parameters are shards between steps)."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    if isinstance(backbone, FSDP):
        return FSDP.summon_full_params(backbone, writeback=False)
    return contextlib.nullcontext()


def _check_same_shapes(teacher: Dict[str, torch.Tensor], student: '_OriginalNames') -> None:
    for name, param in student.named_parameters():
        if name in teacher and teacher[name].shape != param.shape:
            raise RuntimeError(
                f'EMA teacher update: the student\'s {name} is {tuple(param.shape)} here, the teacher\'s '
                f'{tuple(teacher[name].shape)}. Under FSDP the student ViT must be an FSDP unit of its own '
                "and the teacher out of FSDP: auto_wrap_policy=dict("
                "type='granvit_mm.engine.fsdp.wrap_module_classes'), ignored_modules=['head.llm', 'teacher'] "
                "(configs/granvit_pretrain_fsdp.py)")


def _follow_optimizer_steps(model: GranViTPretrainer) -> None:
    """Register a global optimiser step post-hook that moves ``model``'s teacher after each step of an
    optimiser that holds its student's parameters.

    The hook fires only when ``optimizer.step()`` really runs: not on accumulation micro-steps, not on AMP
    steps skipped for inf gradients, and identically on every DDP rank. It holds the model weakly and is
    removed when the model is garbage-collected.

    DeepSpeed steps its own flat copies of the parameters, so this hook does not see the student there; its
    engine step is followed by ``granvit.DeepSpeedTeacherOptimWrapper`` instead.
    """
    ref = weakref.ref(model)

    def hook(optimizer, args, kwargs):
        owner = ref()
        if owner is not None and owner.training and owner.steps_student(optimizer):
            owner.update_teacher()

    weakref.finalize(model, register_optimizer_step_post_hook(hook).remove)
