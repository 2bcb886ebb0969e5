"""What the inferencer asks: an image-conditioned chat model, and the loaders that build one per stage.

:class:`GranViTInferencer` only needs the small interface of :class:`VisionChatModel` (pre-processed pixels ->
answers to text questions, and the encoder's dense map), so every kind of model plugs in the same way:

- ``'stage1'``: an MMEngine ``GranViTPretrainer`` checkpoint (ViT -> projector -> frozen LLM), here;
- ``'stage2'``: an XTuner LLaVA checkpoint (stage 2 or a later instruction-tuning stage: frozen ViT ->
  projector -> tuned LLM) and ``'hf_llava'``: its transformers export, in :mod:`.llava_chat_models`.

``stage='auto'`` tells them apart (:func:`detect_stage`). Another kind registers its own loader::

    @register_chat_model_loader('mine')
    def load_mine(config, checkpoint, device='cpu', llm_path=None, **kwargs) -> VisionChatModel:
        ...

A model pre-processes nothing itself: its ``preprocessor`` (:mod:`.preprocessing`, built from what the model
was tested with) turns images into ``(B, 3, S, S)`` pixels and
:class:`~granvit_mm.core.geometry.SquareGeometry`; boxes are text in its ``box_style`` through
:mod:`granvit_mm.core.box_text`.
"""
import copy
import json
import os.path as osp
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Union, runtime_checkable

import torch

from granvit_mm.core.checkpoint_layout import split_checkpoint

from .checkpoint import load_checkpoint_dict
from .config_utils import load_config
from .preprocessing import PipelinePreprocessor

__all__ = ['VisionChatModel', 'Stage1ChatModel', 'register_chat_model_loader', 'build_chat_model',
           'CHAT_MODEL_LOADERS', 'detect_stage', 'is_hf_llava_dir']


@runtime_checkable
class VisionChatModel(Protocol):
    """The interface the inferencer needs from a stage-1 or stage-2 model.

    A model may also offer ``preprocessor`` (images -> (pixels, geometries), :mod:`.preprocessing`); without
    it the inferencer builds one from the config's test pipeline at ``input_size``."""
    input_size: int  # square side of the model input (pad-to-square, then resize)
    box_style: str  # granvit_mm.core.box_text style of boxes in prompts and answers
    patch_size: int

    def dense_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, C, S/p, S/p) dense map of the encoder."""

    def answer(self, pixels: torch.Tensor, questions: Sequence[Sequence[str]],
               max_new_tokens: Optional[int] = None) -> List[List[str]]:
        """Greedy answers: one list per image, one answer per question (each its own single-turn chat);
        ``max_new_tokens`` None means the model's default."""

    def max_new_tokens_for(self, answer: str) -> int:
        """A generation budget that fits ``answer`` (e.g. a box text) and its end token, at least the
        default."""


CHAT_MODEL_LOADERS: Dict[str, Callable[..., VisionChatModel]] = {}


def register_chat_model_loader(stage: str) -> Callable:
    """Decorator: ``loader(config, checkpoint, device='cpu', llm_path=None, **kwargs) -> VisionChatModel``."""

    def wrap(fn):
        CHAT_MODEL_LOADERS[stage] = fn
        return fn

    return wrap


def is_hf_llava_dir(path) -> bool:
    """A transformers LLaVA directory (``tools/model_converters/xtuner_to_hf_llava.py`` output)?"""
    if not isinstance(path, str) or not osp.isfile(osp.join(path, 'config.json')):
        return False
    with open(osp.join(path, 'config.json'), encoding='utf-8') as f:
        return json.load(f).get('model_type') == 'llava'


def detect_stage(cfg) -> str:
    """``'stage1'`` for a ``GranViTPretrainer`` config, ``'stage2'`` for an XTuner LLaVA one (stage 2,
    3...)."""
    model_type = (cfg.get('model') or {}).get('type', '')
    name = getattr(model_type, '__name__', str(model_type)).split('.')[-1]
    if name == 'GranViTPretrainer':
        return 'stage1'
    if 'LLaVAModel' in name:
        return 'stage2'
    raise NotImplementedError(f'cannot tell which loader builds model.type={name!r}: pass stage=... '
                              f'(one of {sorted(CHAT_MODEL_LOADERS)}) or register a loader')


class Stage1ChatModel(torch.nn.Module):
    """A stage-1 ``GranViTPretrainer`` as a :class:`VisionChatModel`: ViT -> projector -> frozen LLM."""

    def __init__(self, model, preprocessor: PipelinePreprocessor, box_style: Optional[str] = None):
        super().__init__()
        self.model = model
        self.preprocessor = preprocessor
        self.input_size = preprocessor.size
        self.box_style = box_style or preprocessor.box_style

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
def load_stage1(config, checkpoint: str, device: Union[str, torch.device] = 'cpu',
                llm_path: Optional[str] = None, input_size: Optional[int] = None,
                box_style: Optional[str] = None) -> Stage1ChatModel:
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
        raise ValueError(f'checkpoint {checkpoint} does not fit the config\'s model: '
                         f'{len(missing)} missing keys {missing[:4]}, '
                         f'{len(unexpected)} unexpected keys {unexpected[:4]}')
    model.eval().to(device)
    # the config's test pipeline (its size and pad colour) and the model's own data preprocessor
    preprocessor = PipelinePreprocessor.from_config(cfg, size=input_size,
                                                    default_size=model.backbone.img_size[0],
                                                    data_preprocessor=model.data_preprocessor)
    return Stage1ChatModel(model, preprocessor, box_style).eval()


def build_chat_model(config, checkpoint: Optional[str], stage: str = 'auto', **kwargs) -> VisionChatModel:
    """Load a model with the loader registered for ``stage``. ``'auto'``: a transformers LLaVA directory
    (``config`` or ``checkpoint``) -> ``'hf_llava'``; else from the config's ``model.type``."""
    hf_dir = next((p for p in (config, checkpoint) if is_hf_llava_dir(p)), None)
    if stage == 'auto' and hf_dir is not None:
        stage, config = 'hf_llava', hf_dir
    cfg = config if stage == 'hf_llava' else load_config(config)
    if stage == 'auto':
        stage = detect_stage(cfg)
    if stage not in CHAT_MODEL_LOADERS:
        raise NotImplementedError(f'no loader for {stage!r} models; available: {sorted(CHAT_MODEL_LOADERS)} '
                                  '(granvit_mm.apis.register_chat_model_loader adds one)')
    return CHAT_MODEL_LOADERS[stage](cfg, checkpoint, **kwargs)
