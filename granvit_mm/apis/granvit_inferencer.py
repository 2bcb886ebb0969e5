"""Ask a GranViT checkpoint about images: region captions, a global caption, grounding, dense features.

Shaped like mmpretrain's / mmdet's inferencers: built from a config + checkpoint with a ``device``;
``__call__`` takes one image or a list (file path, PIL image or HxWx3 RGB uint8 array, any size/aspect) and
returns one plain dict per image (JSON-serialisable; boxes in the image's own pixels)::

    from granvit_mm.apis import GranViTInferencer
    infer = GranViTInferencer('configs/granvit_pretrain_tiny.py', 'work_dirs/granvit_pretrain_tiny')
    infer('photo.jpg', boxes=[[10, 20, 200, 150]], phrases=['a red circle'], global_caption=True)
    # [{'width': 640, 'height': 480, 'regions': [{'bbox': [...], 'caption': '...'}],
    #   'grounding': [{'phrase': 'a red circle', 'bbox': [...] or None, 'answer': '...'}], 'caption': '...'}]

Every input is checked before the model runs; bad ones raise :class:`InferenceInputError` naming the problem.
Boxes reach the model as text relative to the padded square (``SquareGeometry``), and answers are mapped back
through the same geometry, so the pad/resize is undone exactly.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.registry import DefaultScope

from granvit_mm.core.box_text import format_box, parse_box
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.prompts import bbox2caption_question, caption2bbox_question, global_caption_question

from .chat_model import VisionChatModel, build_chat_model, is_hf_llava_dir
from .checkpoint import resolve_checkpoint
from .config_utils import load_config
from .dense_features import DenseFeatureExtractor, DenseFeatures
from .errors import InferenceInputError
from .inputs import DEFAULT_MAX_PIXELS, as_list, check_boxes, check_phrase, load_image
from .preprocessing import PipelinePreprocessor

__all__ = ['GranViTInferencer']


@dataclass
class _Request:
    """One image and the questions asked about it, checked and in model terms."""
    image: np.ndarray
    geometry: SquareGeometry
    source: Optional[str]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    phrases: List[str] = field(default_factory=list)
    global_caption: bool = False
    questions: List[str] = field(default_factory=list)


class GranViTInferencer:
    """Region captions, global captions and grounding from a GranViT MLLM checkpoint.

    Args:
        config: the training config (file, dict or Config): stage 1 (MMEngine) or stage 2+ (XTuner); or a
            transformers LLaVA directory (``xtuner_to_hf_llava.py`` output; then ``checkpoint`` may be None).
        checkpoint: a .pth file or a work dir (its best, else latest checkpoint).
        device: torch device ('cpu', 'cuda', 'cuda:1', ...).
        llm_path: overrides the config's LLM path (stage 1: the frozen ``model.head.llm_path``; stage 2: the
            LLM the checkpoint's weights are loaded into).
        stage: 'auto' (a LLaVA directory, else from ``model.type``), 'stage1', 'stage2', 'hf_llava', or a
            stage registered with :func:`granvit_mm.apis.register_chat_model_loader`.
        max_pixels: images with more pixels are refused (checked on the file header).
        max_new_tokens: generation length; default the model's.
        **loader_kwargs: passed to the stage's loader (e.g. ``input_size``, ``box_style``).
    """

    def __init__(self, config, checkpoint: Optional[str] = None, device: Union[str, torch.device] = 'cpu',
                 llm_path: Optional[str] = None, stage: str = 'auto',
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, max_new_tokens: Optional[int] = None,
                 **loader_kwargs):
        self.device = torch.device(device)
        hf_dir = next((p for p in (config, checkpoint) if is_hf_llava_dir(p)), None)
        exported = hf_dir and stage in ('auto', 'hf_llava')
        self.checkpoint = hf_dir if exported else resolve_checkpoint(checkpoint)
        # built in the granvit scope whatever the caller left as MMEngine's default (mmdet's DetInferencer
        # switches it to 'mmdet', where GranViTPretrainer is unknown)
        with DefaultScope.overwrite_default_scope('granvit'):
            self.model: VisionChatModel = build_chat_model(config, self.checkpoint, stage, device=self.device,
                                                           llm_path=llm_path, **loader_kwargs)
            # the model's own pre-processing, else the config's test pipeline at the model's input size
            self.preprocessor = getattr(self.model, 'preprocessor', None) or PipelinePreprocessor.from_config(
                load_config(config), default_size=self.model.input_size)
        self.max_pixels = max_pixels
        self.max_new_tokens = max_new_tokens
        self.feature_extractor = DenseFeatureExtractor.from_model(self.model, self.preprocessor, self.device,
                                                                  max_pixels)

    # ------------------------------------------------------------------------------------------- public
    def __call__(self, inputs: Any, boxes: Any = None, phrases: Any = None, global_caption: bool = False,
                 batch_size: int = 1) -> List[dict]:
        """Ask about one image or a list of images.

        Args:
            inputs: one image, or a list of images.
            boxes: for one image, a list of xyxy boxes (or one box); for a list, one such list (or None) per
                image. Each box gets a Bbox2Caption answer.
            phrases: for one image, a list of phrases (or one); for a list, one list (or None) per image, or a
                single phrase asked of every image. Each phrase is grounded (Caption2Bbox).
            global_caption: also ask for the global caption of every image.
            batch_size: images per forward pass.
        """
        images = as_list(inputs)
        single = not isinstance(inputs, (list, tuple))
        per_boxes = self._per_image(boxes, len(images), single, 'boxes')
        per_phrases = self._per_image([phrases] * len(images) if isinstance(phrases, str) and not single
                                      else phrases, len(images), single, 'phrases')
        requests = [self._prepare(img, b, p, global_caption)
                    for img, b, p in zip(images, per_boxes, per_phrases)]
        results: List[dict] = []
        step = max(1, int(batch_size))
        for i in range(0, len(requests), step):
            results += self._forward(requests[i:i + step])
        return results

    def caption_regions(self, image: Any, boxes: Any) -> List[str]:
        """Bbox2Caption answers for ``boxes`` (xyxy, the image's own pixels) of one image."""
        return [r['caption'] for r in self(image, boxes=boxes)[0]['regions']]

    def caption_image(self, image: Any) -> str:
        """The global caption of one image."""
        return self(image, global_caption=True)[0]['caption']

    def ground(self, image: Any, phrases: Union[str, Sequence[str]]) -> List[dict]:
        """``[{'phrase', 'bbox' (xyxy in the image's pixels, or None when the answer has no usable box),
        'answer' (the raw text)}]`` for one image."""
        return self(image, phrases=phrases)[0]['grounding']

    def features(self, inputs: Any, batch_size: int = 1) -> List[DenseFeatures]:
        """Dense maps of the encoder alone (see :class:`DenseFeatureExtractor`)."""
        return self.feature_extractor(inputs, batch_size)

    def load(self, image: Any) -> np.ndarray:
        """Decode and check one image as the inferencer would (RGB uint8)."""
        return load_image(image, self.max_pixels)

    # ---------------------------------------------------------------------------------------- internals
    @staticmethod
    def _per_image(value: Any, n: int, single: bool, name: str) -> list:
        if value is None:
            return [None] * n
        if single:
            return [value]
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise InferenceInputError(f'{name} for {n} images must be a list of {n} entries (one per image, '
                                      f'None for none)')
        return list(value)

    def _prepare(self, image: Any, boxes: Any, phrases: Any, global_caption: bool) -> _Request:
        arr = load_image(image, self.max_pixels)
        h, w = arr.shape[:2]
        req = _Request(arr, SquareGeometry(h, w, self.preprocessor.size),
                       str(image) if isinstance(image, str) else None, global_caption=bool(global_caption))
        if boxes is not None and np.size(boxes) > 0:
            req.boxes = check_boxes(boxes, w, h)
        if phrases is not None:
            req.phrases = [check_phrase(p) for p in ([phrases] if isinstance(phrases, str) else phrases)]
        if not len(req.boxes) and not req.phrases and not req.global_caption:
            raise InferenceInputError('nothing to ask: give boxes, phrases or global_caption=True')
        style = self.model.box_style
        req.questions = [bbox2caption_question(b, style)
                         for b in req.geometry.to_normalized(req.boxes).tolist()]
        req.questions += [caption2bbox_question(p) for p in req.phrases]
        if req.global_caption:
            req.questions.append(global_caption_question())
        return req

    def _forward(self, requests: Sequence[_Request]) -> List[dict]:
        pixels, geoms = self.preprocessor([r.image for r in requests], self.device)
        if [g for g in geoms] != [r.geometry for r in requests]:  # the pipeline moved the pixels differently
            raise RuntimeError(f'the pre-processing geometry {geoms} differs from the one the boxes used '
                               f'{[r.geometry for r in requests]}')
        budget = self.max_new_tokens
        if budget is None and any(r.phrases for r in requests):  # a whole box text must fit
            budget = self.model.max_new_tokens_for(format_box([0.888] * 4, self.model.box_style))
        answers = self.model.answer(pixels, [r.questions for r in requests], budget)
        return [self._postprocess(r, a) for r, a in zip(requests, answers)]

    def _postprocess(self, req: _Request, answers: List[str]) -> dict:
        h, w = req.image.shape[:2]
        out = dict(width=int(w), height=int(h))
        if req.source is not None:
            out['image'] = req.source
        n_box, n_phrase = len(req.boxes), len(req.phrases)
        if n_box:
            out['regions'] = [dict(bbox=[round(float(v), 2) for v in box], caption=text)
                              for box, text in zip(req.boxes.tolist(), answers[:n_box])]
        if n_phrase:
            out['grounding'] = [dict(phrase=p, bbox=self.answer_to_box(a, req.geometry), answer=a)
                                for p, a in zip(req.phrases, answers[n_box:n_box + n_phrase])]
        if req.global_caption:
            out['caption'] = answers[n_box + n_phrase]
        return out

    def answer_to_box(self, answer: str, geometry: SquareGeometry) -> Optional[List[float]]:
        """A Caption2Bbox answer -> xyxy in the image's own pixels (pad/resize undone, clipped to the image),
        or None when the text holds no box of the model's style, or the box is inverted or lies in the
        padding."""
        box01 = parse_box(answer, self.model.box_style)
        if box01 is None:
            return None
        box = geometry.from_normalized(np.asarray(box01, np.float32))[0]
        if box[2] <= box[0] or box[3] <= box[1]:
            return None
        return [round(float(v), 2) for v in box]
