"""lmms-eval task hooks of the tasks that ``lmms_data`` writes (``!function granvit_lmms_utils.<name>``).

Coordinates: our models answer boxes relative to the padded square (``core.geometry``: the image sits at the
top-left of a square of side max(w, h)); lmms-eval's referring-expression truth is relative to the original
image. ``rec_process_results`` converts every answer with ``SquareGeometry`` before lmms-eval's own IoU and
accuracy functions score it; an answer that is not a box (or an empty / inverted one) scores as a miss.

Prompts: ``rec_doc_to_text`` is the paper's Caption2Bbox prompt (``core.prompts``), which stage 2 trains;
``rec_doc_to_text_lmms`` is lmms-eval's RefCOCO prompt (a sentence on the coordinate format, then the same
question); VQA tasks ask the record's question with lmms-eval's post-prompt where one is configured.
"""
import re
import string
from typing import List, Optional, Sequence

from granvit_mm.core.box_text import parse_box
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.prompts import caption2bbox_question

REC_METRICS = ('IoU', 'ACC@0.1', 'ACC@0.3', 'ACC@0.5', 'ACC@0.7', 'ACC@0.9', 'Center_ACC')
MISS = [0.0, 0.0, 0.0, 0.0]


def _rec_utils():
    from lmms_eval.tasks.refcoco import utils_rec
    return utils_rec


# ---- referring expressions (RefCOCO / RefCOCO+ / RefCOCOg and the GranSynth toy) -----------------------
def square_box_to_image(box01: Sequence[float], width: int, height: int) -> List[float]:
    """A [0, 1] box relative to the padded square -> [0, 1] relative to the (width x height) image."""
    x1, y1, x2, y2 = SquareGeometry(int(height), int(width), 1).from_normalized(box01)[0].tolist()
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def answer_box(text: str, width: int, height: int) -> List[float]:
    """The first box of an answer in original-image [0, 1] coordinates; ``MISS`` when there is none."""
    box: Optional[List[float]] = parse_box(text or '')
    if box is None:
        return list(MISS)
    box = square_box_to_image(box, width, height)
    return box if box[2] > box[0] and box[3] > box[1] else list(MISS)


def rec_process_docs(dataset):
    """lmms-eval's RefCOCO pre-processing: image size columns, xywh pixels -> [0, 1] xyxy, one row a
    sentence."""
    return _rec_utils().refcoco_bbox_rec_preprocess_dataset(dataset)


def rec_doc_to_visual(doc):
    return [doc['image'].convert('RGB')]


def rec_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return caption2bbox_question(doc['answer'])


def rec_doc_to_text_lmms(doc, lmms_eval_specific_kwargs=None):
    return _rec_utils().refcoco_bbox_rec_doc_to_text(doc)


def rec_process_results(doc, results):
    pred = answer_box(results[0] if results else '', doc['image_width'], doc['image_height'])
    data = {'answer': doc['answer'], 'pred': pred, 'ann_id': doc['question_id'], 'bbox': doc['bbox']}
    return {f'refcoco_{m}': data for m in REC_METRICS}


def rec_iou(results):
    return _rec_utils().refcoco_bbox_rec_iou(results)


def rec_acc01(results):
    return _rec_utils().refcoco_bbox_rec_acc01(results)


def rec_acc03(results):
    return _rec_utils().refcoco_bbox_rec_acc03(results)


def rec_acc05(results):
    return _rec_utils().refcoco_bbox_rec_acc05(results)


def rec_acc07(results):
    return _rec_utils().refcoco_bbox_rec_acc07(results)


def rec_acc09(results):
    return _rec_utils().refcoco_bbox_rec_acc09(results)


def rec_center_acc(results):
    return _rec_utils().refcoco_bbox_rec_center_acc(results)


# ---- short-answer VQA (the GranSynth attribute toy; DocVQA / TextVQA-style copies) ----------------------
def vqa_doc_to_visual(doc):
    return [doc['image'].convert('RGB')]


def vqa_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD-style)."""
    text = (text or '').lower()
    text = ''.join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r'\b(a|an|the)\b', ' ', text)
    return ' '.join(text.split())


def vqa_exact_match(doc, results):
    """1 when the normalised answer equals a normalised reference answer."""
    pred = normalize_answer(results[0] if results else '')
    return {'exact_match': float(pred in {normalize_answer(a) for a in doc['answers']})}


def textvqa_process_results(doc, results):
    """lmms-eval's TextVQA accuracy (EvalAI answer processing, min(1, matches / 3))."""
    from lmms_eval.tasks.textvqa import utils
    return utils.textvqa_process_results(doc, results)
