"""Stage 2 (and later) models as :class:`~granvit_mm.apis.chat_model.VisionChatModel`: the XTuner checkpoint
and its transformers export, the two models users ground phrases with.

- ``'stage2'``: an XTuner config + its ``iter_N.pth`` (``xtuner train``), loaded the one way the project loads
  them (:func:`granvit_mm.xtuner.stage2_eval.load_stage2`, as ``tools/analysis_tools/eval_stage2.py`` and the
  exporter do) and answered with :func:`granvit_mm.xtuner.llava_model.greedy_answers`, the evaluation's
  decoding;
- ``'hf_llava'``: the ``LlavaForConditionalGeneration`` directory of
  ``tools/model_converters/xtuner_to_hf_llava.py``, prompted through its saved chat template.

Both pre-process with the image processor they were trained with (``GranViTImageProcessor``: pad to a square,
resize, normalise), and their dense features are the visual tokens the projector reads
(:mod:`granvit_mm.core.visual_tokens`) laid out on the patch grid.
"""
import json
import os.path as osp
from typing import List, Optional, Sequence

import torch

from granvit_mm.core.visual_tokens import num_visual_tokens, select_visual_tokens

from .chat_model import register_chat_model_loader
from .config_utils import load_config
from .preprocessing import ImageProcessorPreprocessor

__all__ = ['XTunerLLaVAChatModel', 'HFLlavaChatModel', 'load_xtuner_llava', 'load_hf_llava']

DEFAULT_MAX_NEW_TOKENS = 64  # tools/analysis_tools/eval_stage2.py's default


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) visual tokens of a square grid -> (B, C, g, g) map (row-major, as the ViT lays them out)."""
    b, n, c = tokens.shape
    g = int(round(n ** 0.5))
    if g * g != n:
        raise ValueError(f'{n} visual tokens do not form a square grid')
    return tokens.transpose(1, 2).reshape(b, c, g, g)


def _budget(tokenizer, answer: str, default: int) -> int:
    return max(default, len(tokenizer.encode(answer, add_special_tokens=False)) + 2)


class XTunerLLaVAChatModel:
    """A ``GranViTLLaVAModel`` (XTuner) + its tokenizer and chat template."""

    def __init__(self, model, tokenizer, preprocessor, box_style: str = 'decimal3',
                 template: Optional[dict] = None, system: str = '',
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        self.model, self.tokenizer, self.preprocessor = model, tokenizer, preprocessor
        self.box_style, self.template, self.system = box_style, template, system
        self.max_new_tokens = int(max_new_tokens)
        self.input_size = preprocessor.size
        self.patch_size = int(model.visual_encoder.config.patch_size)

    @torch.no_grad()
    def dense_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return tokens_to_map(self.model.visual_tokens(pixels))

    def answer(self, pixels, questions: Sequence[Sequence[str]], max_new_tokens=None) -> List[List[str]]:
        from granvit_mm.xtuner.llava_model import greedy_answers
        return greedy_answers(self.model, self.tokenizer, pixels, questions, template=self.template,
                              system=self.system, max_new_tokens=max_new_tokens or self.max_new_tokens)

    def max_new_tokens_for(self, answer: str) -> int:
        return _budget(self.tokenizer, answer, self.max_new_tokens)


@register_chat_model_loader('stage2')
def load_xtuner_llava(config, checkpoint: str, device='cpu', llm_path: Optional[str] = None,
                      input_size: Optional[int] = None, box_style: Optional[str] = None,
                      trust_checkpoint: bool = False) -> XTunerLLaVAChatModel:
    """An XTuner stage-2 config + checkpoint (``llm_path`` replaces the config's LLM and tokenizer path; the
    checkpoint then supplies the trained LLM weights, as in training)."""
    from xtuner.registry import BUILDER

    from granvit_mm.xtuner.gran_llava_dataset import config_box_style
    from granvit_mm.xtuner.image_processor import GranViTImageProcessor
    from granvit_mm.xtuner.stage2_eval import load_stage2
    cfg = load_config(config)
    if llm_path:
        cfg.model.llm.pretrained_model_name_or_path = llm_path
        cfg.tokenizer.pretrained_model_name_or_path = llm_path
    try:
        model, tokenizer = load_stage2(cfg, checkpoint, trust=trust_checkpoint, device=device)
    except FileNotFoundError:
        raise
    except OSError as e:  # transformers' "not a local folder and not a model on the Hub" (we are offline)
        from granvit_mm.core.paths import MissingPathError
        raise MissingPathError(
            f'{e}\nThe stage-2 config builds its LLM from '
            f'{cfg.model.llm.get("pretrained_model_name_or_path")!r} and its vision tower from '
            f'{cfg.model.visual_encoder.get("pretrained_model_name_or_path")!r} (relative paths are relative '
            'to the current folder: run from the repository root, or pass llm_path / --llm-path; the tower '
            'is tools/model_converters/granvit_to_hf.py output).') from None
    size = input_size or model.visual_encoder.config.image_size
    if cfg.get('image_processor') and not input_size:
        processor = BUILDER.build(cfg.image_processor)
    else:
        processor = GranViTImageProcessor(size=size)
    style = box_style or config_box_style(cfg)
    template = cfg.get('prompt_template')
    return XTunerLLaVAChatModel(model, tokenizer, ImageProcessorPreprocessor(processor), style,
                                dict(template) if template else None, cfg.get('SYSTEM', '') or '')


class HFLlavaChatModel:
    """A transformers ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` (the exported stage-2 model)."""

    def __init__(self, model, processor, box_style: str = 'decimal3',
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        self.model, self.processor, self.box_style = model, processor, box_style
        self.preprocessor = ImageProcessorPreprocessor(processor.image_processor)
        self.max_new_tokens = int(max_new_tokens)
        self.input_size = self.preprocessor.size
        self.patch_size = int(model.config.vision_config.patch_size)

    @torch.no_grad()
    def dense_features(self, pixels: torch.Tensor) -> torch.Tensor:
        tower = self.model.vision_tower
        out = tower(pixels.to(tower.dtype), output_hidden_states=True)
        return tokens_to_map(select_visual_tokens(out.hidden_states, self.model.config.vision_feature_layer))

    def _prompt(self, question: str) -> str:
        """The saved chat template's single-turn prompt, ``<image>`` expanded to one token per patch."""
        prompt = self.processor.apply_chat_template(
            [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': question}]}])
        token = self.processor.image_token
        return prompt.replace(token, token * num_visual_tokens(self.input_size, self.patch_size))

    @torch.no_grad()
    def answer(self, pixels, questions: Sequence[Sequence[str]], max_new_tokens=None) -> List[List[str]]:
        rows = [(i, q) for i, qs in enumerate(questions) for q in qs]
        answers: List[List[str]] = [[] for _ in questions]
        if not rows:
            return answers
        tok = self.processor.tokenizer
        device = self.model.device
        inputs = tok([self._prompt(q) for _, q in rows], return_tensors='pt', padding=True,
                     padding_side='left', add_special_tokens=False).to(device)
        row_pixels = pixels[[i for i, _ in rows]].to(device, self.model.dtype)
        out = self.model.generate(**inputs, pixel_values=row_pixels, do_sample=False,
                                  max_new_tokens=max_new_tokens or self.max_new_tokens)
        texts = tok.batch_decode(out[:, inputs['input_ids'].shape[1]:], skip_special_tokens=True)
        for (i, _), text in zip(rows, texts):
            answers[i].append(text.strip())
        return answers

    def max_new_tokens_for(self, answer: str) -> int:
        return _budget(self.processor.tokenizer, answer, self.max_new_tokens)


def _read_json(folder: str, name: str) -> dict:
    path = osp.join(folder, name)
    if not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def hf_llava_processor(folder: str):
    """The export's ``LlavaProcessor``, built from its files without running code from the folder (the saved
    processor names ``GranViTImageProcessor`` through ``auto_map``; this package provides that class)."""
    from transformers import AutoTokenizer, LlavaProcessor

    from granvit_mm.xtuner.image_processor import GranViTImageProcessor
    settings = _read_json(folder, 'processor_config.json')
    keys = ('patch_size', 'vision_feature_select_strategy', 'image_token', 'num_additional_image_tokens')
    settings = {k: settings[k] for k in keys if k in settings}
    template = _read_json(folder, 'chat_template.json').get('chat_template')
    return LlavaProcessor(image_processor=GranViTImageProcessor.from_pretrained(folder),
                          tokenizer=AutoTokenizer.from_pretrained(folder), chat_template=template, **settings)


@register_chat_model_loader('hf_llava')
def load_hf_llava(folder: str, checkpoint: Optional[str] = None, device='cpu', llm_path: Optional[str] = None,
                  input_size: Optional[int] = None, box_style: Optional[str] = None) -> HFLlavaChatModel:
    """A ``tools/model_converters/xtuner_to_hf_llava.py`` directory (``checkpoint`` and ``llm_path`` unused:
    the directory holds every weight)."""
    from transformers import LlavaForConditionalGeneration

    from granvit_mm.core.paths import check_path
    from granvit_mm.xtuner.hf_llava import export_box_style
    folder = check_path(folder, 'The transformers LLaVA directory', 'Export one with '
                        'tools/model_converters/xtuner_to_hf_llava.py CONFIG CHECKPOINT OUT_DIR.')
    if input_size:
        raise ValueError('a transformers LLaVA export has a fixed input size (its image processor\'s)')
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval().to(device)
    return HFLlavaChatModel(model, hf_llava_processor(folder), box_style or export_box_style(model.config))
