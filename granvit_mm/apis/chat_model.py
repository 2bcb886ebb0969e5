"""What the inferencer asks: an image-conditioned chat model, and the loaders that build one per stage.

:class:`GranViTInferencer` only needs the small interface of :class:`VisionChatModel` (pre-processed pixels ->
answers to text questions, and the encoder's dense map), so stage 1 (MMEngine ``GranViTPretrainer``: ViT ->
projector -> frozen LLM) and stage 2 (XTuner LLaVA: frozen ViT -> projector -> tuned LLM) plug in the same way.

Extension point for stage 2: register a loader under ``'stage2'``::

    from granvit_mm.apis import register_chat_model_loader

    @register_chat_model_loader('stage2')
    def load_stage2(config, checkpoint, device='cpu', llm_path=None, **kwargs) -> VisionChatModel:
        ...  # build the XTuner model from `config`, load `checkpoint`, wrap it

and pass ``stage='stage2'`` to the inferencer (``stage='auto'`` picks it for configs whose ``model.type`` is not
``GranViTPretrainer``). The wrapper must pre-process nothing itself: it receives ``(B, 3, S, S)`` float pixels
made by :func:`granvit_mm.core.image_input.to_model_input` at its ``input_size``, and writes/reads boxes as text
in its ``box_style`` through :mod:`granvit_mm.core.box_text`.
"""
import copy
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Union, runtime_checkable

import torch

from granvit_mm.core.checkpoint_layout import split_checkpoint
from .checkpoint import load_checkpoint_dict
from .config_utils import config_setting, load_config

__all__ = ['VisionChatModel', 'Stage1ChatModel', 'register_chat_model_loader', 'build_chat_model',
           'CHAT_MODEL_LOADERS']


@runtime_checkable
class VisionChatModel(Protocol):
    """The interface the inferencer needs from a stage-1 or stage-2 model."""
    input_size: int  # square side of the model input (pad-to-square, then resize)
    box_style: str  # granvit_mm.core.box_text style of boxes in prompts and answers
    patch_size: int
    backbone: torch.nn.Module  # the ViT (GranViT, out_type='featmap')

    def dense_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, C, S/p, S/p) dense map of the encoder."""

    def answer(self, pixels: torch.Tensor, questions: Sequence[Sequence[str]],
               max_new_tokens: Optional[int] = None) -> List[List[str]]:
        """Greedy answers: one list per image, one answer per question (each its own single-turn chat);
        ``max_new_tokens`` None means the model's default."""

    def max_new_tokens_for(self, answer: str) -> int:
        """A generation budget that fits ``answer`` (e.g. a box text) and its end token, at least the default."""


CHAT_MODEL_LOADERS: Dict[str, Callable[..., VisionChatModel]] = {}


def register_chat_model_loader(stage: str) -> Callable:
    """Decorator: ``loader(config, checkpoint, device='cpu', llm_path=None, **kwargs) -> VisionChatModel``."""

    def wrap(fn):
        CHAT_MODEL_LOADERS[stage] = fn
        return fn

    return wrap


def detect_stage(cfg) -> str:
    model_type = str((cfg.get('model') or {}).get('type', '')).split('.')[-1]
    return 'stage1' if model_type == 'GranViTPretrainer' else 'stage2'


class Stage1ChatModel(torch.nn.Module):
    """A stage-1 ``GranViTPretrainer`` as a :class:`VisionChatModel`: ViT -> projector -> frozen LLM."""

    def __init__(self, model, input_size: int, box_style: str = 'decimal3'):
        super().__init__()
        self.model = model
        self.input_size = int(input_size)
        self.box_style = box_style

    @property
    def backbone(self):
        return self.model.backbone

    @property
    def patch_size(self) -> int:
        return self.model.backbone.patch_size

    @torch.no_grad()
    def dense_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.extract_feat(pixels)

    @torch.no_grad()
    def answer(self, pixels, questions, max_new_tokens=None):
        embeds = self.model.visual_embeds(self.model.extract_feat(pixels))
        return self.model.head.generate(embeds, questions, max_new_tokens)

    def max_new_tokens_for(self, answer: str) -> int:
        head = self.model.head
        needed = len(head.tokenizer.encode(answer, add_special_tokens=False)) + 2  # + suffix / eos
        return max(int(head.max_new_tokens), needed)


@register_chat_model_loader('stage1')
def load_stage1(config, checkpoint: str, device: Union[str, torch.device] = 'cpu', llm_path: Optional[str] = None,
                input_size: Optional[int] = None, box_style: Optional[str] = None) -> Stage1ChatModel:
    """Build ``config``'s GranViTPretrainer without its teacher, load ``checkpoint``'s student, projector and
    head (the frozen LLM comes from ``model.head.llm_path``, or ``llm_path`` when given)."""
    from granvit_mm.registry import MODELS
    cfg = load_config(config)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    if llm_path:
        model_cfg['head']['llm_path'] = llm_path
    model_cfg['backbone']['init_cfg'] = None  # the weights come from the checkpoint
    model_cfg['distill_loss'] = None  # no EMA teacher at inference
    state, _ = split_checkpoint(load_checkpoint_dict(checkpoint))
    state = {k: v for k, v in state.items() if not k.startswith('teacher.')}
    model = MODELS.build(model_cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith('head.llm.')]  # the frozen LLM is loaded from its path
    if missing or unexpected:
        raise ValueError(f'checkpoint {checkpoint} does not fit the config\'s model: {len(missing)} missing keys '
                         f'{missing[:4]}, {len(unexpected)} unexpected keys {unexpected[:4]}')
    model.eval().to(device)
    size = input_size or config_setting(cfg, 'GranSquareResize', 'size') or cfg.get('img_size') \
        or model.backbone.img_size[0]
    style = box_style or config_setting(cfg, 'PackGranInputs', 'box_style') or cfg.get('box_style', 'decimal3')
    return Stage1ChatModel(model, int(size), style).eval()


def build_chat_model(config, checkpoint: str, stage: str = 'auto', **kwargs) -> VisionChatModel:
    """Load ``config`` + ``checkpoint`` with the loader registered for ``stage`` ('auto': from model.type)."""
    cfg = load_config(config)
    if stage == 'auto':
        stage = detect_stage(cfg)
    if stage not in CHAT_MODEL_LOADERS:
        raise NotImplementedError(
            f'no loader for {stage!r} models (config model.type={cfg.model.get("type")!r}); available: '
            f'{sorted(CHAT_MODEL_LOADERS)}. Stage-2 (XTuner) support plugs in with '
            '`granvit_mm.apis.register_chat_model_loader("stage2")` (see granvit_mm/apis/chat_model.py).')
    return CHAT_MODEL_LOADERS[stage](cfg, checkpoint, **kwargs)
