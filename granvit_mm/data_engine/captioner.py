"""Captions: one stage, swappable backends behind one interface.

``CaptionRegions`` asks a backend for a global caption (except for OCR sources, as in the paper) and a caption
of every object region (text regions keep their transcription), then applies the region word limit (the
paper's captions are at most about 10 words): ``over_limit='cut'`` keeps the first ``max_region_words`` words,
``'flag'`` keeps the caption and names the region in the record's provenance; both are counted.

Backends (``caption(images, boxes, want_global) -> [(global or None, [region captions])]``):
- ``GranViTCaptioner``: this project's checkpoints through :class:`granvit_mm.apis.GranViTInferencer` (the
  paper's Bbox2Caption and global prompts, the box in the model's own box text);
- ``HFVLMCaptioner``: a transformers image-text-to-text model (the Qwen2-VL family of transformers 4.48);
- ``OpenAICaptioner``: an OpenAI-compatible server with image inputs (``vllm serve``, SGLang, LMDeploy,
  ``transformers serve``) over HTTP with bounded retries and timeouts.
The prompts of the last two are config values. The paper's are not published; the defaults below are ours
(the region one is the paper's Bbox2Caption wording with the box relative to the image).
"""
import base64
import io
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np

from granvit_mm.core.box_text import format_box
from granvit_mm.registry import DATA_ENGINE_STAGES

from .item import count, reject
from .stage import Stage, build_component

OUR_GLOBAL_PROMPT = 'Describe in detail what is shown in the image in one paragraph'
OUR_REGION_PROMPT = ('Describe the content contained within the normalized bounding box coordinates {box} '
                     'in no more than 10 words.')

Answer = Tuple[Optional[str], List[str]]


class CaptionServiceError(RuntimeError):
    """A captioning server did not answer within the retries: the shard stays unfinished (rerun resumes)."""


def clean_text(text: str) -> str:
    return ' '.join(str(text).split())


# ---- backends --------------------------------------------------------------------------------------------
class PromptedBackend:
    """Backends that ask one (image, prompt) question at a time; the box goes into the prompt as text
    (``box_style`` of core/box_text, relative to the image's width and height)."""

    def __init__(self, global_prompt: str = OUR_GLOBAL_PROMPT, region_prompt: str = OUR_REGION_PROMPT,
                 box_style: str = 'decimal3') -> None:
        if '{box}' not in region_prompt:
            raise ValueError(f'region_prompt must hold {{box}}: {region_prompt!r}')
        self.global_prompt, self.region_prompt, self.box_style = global_prompt, region_prompt, box_style

    def region_question(self, box: Sequence[float], width: int, height: int) -> str:
        x1, y1, x2, y2 = box
        return self.region_prompt.format(box=format_box([x1 / width, y1 / height, x2 / width, y2 / height],
                                                        self.box_style))

    def ask(self, images: List[np.ndarray], questions: List[Tuple[int, str]]) -> List[str]:
        """Answers to ``(image index, prompt)`` questions, in order."""
        raise NotImplementedError

    def caption(self, images: List[np.ndarray], boxes: List[np.ndarray],
                want_global: List[bool]) -> List[Answer]:
        questions = []
        for i, (im, bx) in enumerate(zip(images, boxes)):
            if want_global[i]:
                questions.append((i, self.global_prompt))
            questions += [(i, self.region_question(b, im.shape[1], im.shape[0])) for b in bx]
        answers = iter(self.ask(images, questions)) if questions else iter(())
        out = []
        for i, bx in enumerate(boxes):
            glob = clean_text(next(answers)) if want_global[i] else None
            out.append((glob, [clean_text(next(answers)) for _ in bx]))
        return out


@DATA_ENGINE_STAGES.register_module()
class GranViTCaptioner:
    """This project's stage-1 (or registered stage-2) checkpoint through ``GranViTInferencer``'s public
    API."""

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu', llm_path: Optional[str] = None,
                 batch_size: int = 8, max_new_tokens: Optional[int] = None) -> None:
        import os.path as osp

        from granvit_mm.apis import GranViTInferencer
        self.inferencer = GranViTInferencer(config, checkpoint, device=device, llm_path=llm_path,
                                            max_new_tokens=max_new_tokens)
        self.batch_size = int(batch_size)
        self.tag = f'granvit:{osp.basename(self.inferencer.checkpoint)}'

    def caption(self, images: List[np.ndarray], boxes: List[np.ndarray],
                want_global: List[bool]) -> List[Answer]:
        out: List[Answer] = [(None, []) for _ in images]
        for flag in (True, False):
            idx = [i for i in range(len(images)) if want_global[i] == flag and (flag or len(boxes[i]))]
            if not idx:
                continue
            res = self.inferencer([images[i] for i in idx],
                                  boxes=[boxes[i].tolist() if len(boxes[i]) else None for i in idx],
                                  global_caption=flag, batch_size=self.batch_size)
            for i, r in zip(idx, res):
                out[i] = (clean_text(r['caption']) if flag else None,
                          [clean_text(reg['caption']) for reg in r.get('regions', [])])
        return out


@DATA_ENGINE_STAGES.register_module()
class HFVLMCaptioner(PromptedBackend):
    """A transformers image-text-to-text model (``AutoModelForVision2Seq`` + ``AutoProcessor``; the Qwen2-VL
    family in transformers 4.48, Qwen2.5-VL from 4.49), greedy, ``batch_size`` questions per ``generate``.

    Args:
        model_path: a local Hugging Face directory (nothing is downloaded at run time).
        device, dtype: e.g. 'cuda' and 'bfloat16'.
        processor_kwargs: e.g. ``dict(min_pixels=..., max_pixels=...)`` for Qwen2-VL's dynamic resolution.
    """

    def __init__(self, model_path: str, device: str = 'cpu', dtype: str = 'float32', batch_size: int = 8,
                 max_new_tokens: int = 48, processor_kwargs: Optional[dict] = None, **prompt_kwargs) -> None:
        import torch
        from transformers import AutoModelForVision2Seq, AutoProcessor
        super().__init__(**prompt_kwargs)
        self.processor = AutoProcessor.from_pretrained(model_path, **(processor_kwargs or {}))
        self.processor.tokenizer.padding_side = 'left'
        self.model = AutoModelForVision2Seq.from_pretrained(model_path, torch_dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        self.device, self.batch_size, self.max_new_tokens = device, int(batch_size), int(max_new_tokens)
        import os.path as osp
        self.tag = f'hf:{osp.basename(osp.normpath(model_path))}'

    def ask(self, images: List[np.ndarray], questions: List[Tuple[int, str]]) -> List[str]:
        import torch
        from PIL import Image
        pil = {}
        answers = []
        for s in range(0, len(questions), self.batch_size):
            chunk = questions[s:s + self.batch_size]
            texts = [self.processor.apply_chat_template(
                [dict(role='user', content=[dict(type='image'), dict(type='text', text=q)])],
                tokenize=False, add_generation_prompt=True) for _, q in chunk]
            ims = [pil.setdefault(i, Image.fromarray(images[i])) for i, _ in chunk]
            inputs = self.processor(text=texts, images=ims, return_tensors='pt', padding=True).to(self.device)
            with torch.no_grad():
                gen = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            answers += self.processor.batch_decode(gen[:, inputs['input_ids'].shape[1]:],
                                                   skip_special_tokens=True)
        return answers


@DATA_ENGINE_STAGES.register_module()
class OpenAICaptioner(PromptedBackend):
    """An OpenAI-compatible ``/v1/chat/completions`` server with image inputs (vLLM, SGLang, LMDeploy).

    Each question is one request (the image as a base64 data URL); up to ``concurrency`` are in flight (the
    server batches them). A request is tried ``1 + max_retries`` times (connection errors, timeouts, HTTP 429
    and 5xx; back-off ``retry_wait * 2**attempt`` s); other HTTP errors and exhausted retries raise
    :class:`CaptionServiceError`, which leaves the shard unfinished for the rerun.
    """

    def __init__(self, base_url: str, model: str, api_key: str = 'EMPTY', timeout: float = 60.0,
                 max_retries: int = 3, retry_wait: float = 1.0, concurrency: int = 8, max_tokens: int = 48,
                 image_format: str = 'JPEG', **prompt_kwargs) -> None:
        super().__init__(**prompt_kwargs)
        self.url = base_url.rstrip('/') + '/chat/completions'
        self.model, self.api_key, self.timeout = model, api_key, float(timeout)
        self.max_retries, self.retry_wait = int(max_retries), float(retry_wait)
        self.concurrency, self.max_tokens, self.image_format = int(concurrency), int(max_tokens), image_format
        self.tag = f'openai:{model}'

    def _data_url(self, rgb: np.ndarray) -> str:
        from PIL import Image
        buf = io.BytesIO()
        extra = {'quality': 95} if self.image_format == 'JPEG' else {}
        Image.fromarray(rgb).save(buf, format=self.image_format, **extra)
        mime = 'jpeg' if self.image_format == 'JPEG' else self.image_format.lower()
        return f'data:image/{mime};base64,' + base64.b64encode(buf.getvalue()).decode()

    def _post(self, body: bytes) -> str:
        last = ''
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.retry_wait * 2**(attempt - 1))
            req = urllib.request.Request(self.url, data=body, method='POST', headers={
                'Content-Type': 'application/json', 'Authorization': f'Bearer {self.api_key}'})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())['choices'][0]['message']['content'] or ''
            except urllib.error.HTTPError as e:
                last = f'HTTP {e.code}: {e.read()[:200]!r}'
                if e.code != 429 and e.code < 500:
                    raise CaptionServiceError(f'{self.url} refused the request ({last})') from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f'{type(e).__name__}: {e}'
            except (KeyError, IndexError, ValueError) as e:
                last = f'malformed answer ({type(e).__name__}: {e})'
        raise CaptionServiceError(f'{self.url}: no answer after {self.max_retries + 1} tries ({last})')

    def ask(self, images: List[np.ndarray], questions: List[Tuple[int, str]]) -> List[str]:
        urls = {i: self._data_url(images[i]) for i in sorted({i for i, _ in questions})}
        bodies = [json.dumps(dict(model=self.model, max_tokens=self.max_tokens, temperature=0.0, messages=[
            dict(role='user', content=[dict(type='image_url', image_url=dict(url=urls[i])),
                                       dict(type='text', text=q)])])).encode() for i, q in questions]
        with ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            return list(pool.map(self._post, bodies))


# ---- the stage -------------------------------------------------------------------------------------------
@DATA_ENGINE_STAGES.register_module()
class CaptionRegions(Stage):
    """Global and region captions from ``backend`` (a config dict of one of the backends above).

    Args:
        global_caption: ask for global captions (never for ``no_global_sources``, the OCR sources).
        caption_kinds: region kinds that get a new caption (text regions keep their transcription).
        max_region_words: the word limit of region captions; ``over_limit``: 'cut' or 'flag'.
    """
    name = 'caption'

    def __init__(self, backend: dict, global_caption: bool = True,
                 no_global_sources: Sequence[str] = ('ocr', ),
                 caption_kinds: Sequence[str] = ('object', ), max_region_words: int = 10,
                 over_limit: str = 'cut') -> None:
        if over_limit not in ('cut', 'flag'):
            raise ValueError(f"over_limit must be 'cut' or 'flag', got {over_limit!r}")
        self.backend = build_component(backend)
        self.global_caption, self.no_global = bool(global_caption), set(no_global_sources)
        self.kinds, self.max_words, self.over_limit = set(caption_kinds), int(max_region_words), over_limit

    def provenance(self) -> dict:
        return dict(model=self.backend.tag, max_region_words=self.max_words, over_limit=self.over_limit)

    def _limit(self, it: dict, n: int, text: str) -> str:
        words = text.split()
        if len(words) <= self.max_words:
            return text
        if self.over_limit == 'cut':
            count(it, 'caption:region_captions_cut')
            return ' '.join(words[:self.max_words])
        count(it, 'caption:region_captions_flagged')
        it['flags'].append(f'regions[{n}].caption: {len(words)} words > {self.max_words}')
        return text

    def process(self, items: List[dict]) -> None:
        todo = [[n for n, r in enumerate(it['regions']) if r.get('kind',
                                                                 'object') in self.kinds] for it in items]
        want = [self.global_caption and it['source'] not in self.no_global for it in items]
        boxes = [np.asarray([it['regions'][n]['bbox'] for n in idx], np.float64).reshape(-1, 4)
                 for it, idx in zip(items, todo)]
        try:
            answers = self.backend.caption([it['pixels'] for it in items], boxes, want)
        except CaptionServiceError:
            raise
        except Exception as e:  # one bad image must not sink the batch: retry one by one
            if len(items) == 1:
                reject(items[0], self.name, 'backend_error', f'{type(e).__name__}: {e}')
                return
            for one in items:
                self.process([one])
            return
        for it, idx, (glob, caps) in zip(items, todo, answers):
            it['caption'] = glob or None
            for n, text in zip(idx, caps):
                it['regions'][n]['caption'] = self._limit(it, n, text)
            it['provenance']['captions'] = self.backend.tag
