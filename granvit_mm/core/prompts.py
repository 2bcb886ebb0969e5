"""The paper's prompts, word for word (docs/method.md). Stage 1 (MMEngine) and stage 2 (XTuner) both use
these."""
from typing import Sequence

from .box_text import format_box

GLOBAL_CAPTION_PROMPT = 'Describe in detail what is shown in the image in one paragraph'
BBOX2CAPTION_PROMPT = ('Describe the content contained within the normalized bounding box coordinates {bbox} '
                       'in no more than 10 words.')
CAPTION2BBOX_PROMPT = ('Please provide the bounding box coordinate of the region this sentence describes: '
                       '{caption}')

TASKS = ('global_caption', 'bbox2caption', 'caption2bbox')


def global_caption_question() -> str:
    return GLOBAL_CAPTION_PROMPT


def bbox2caption_question(box: Sequence[float], style: str = 'decimal3') -> str:
    """Question for a normalised xyxy box: the box is written into the prompt as text."""
    return BBOX2CAPTION_PROMPT.format(bbox=format_box(box, style))


def caption2bbox_question(caption: str) -> str:
    return CAPTION2BBOX_PROMPT.format(caption=caption)


def caption2bbox_answer(box: Sequence[float], style: str = 'decimal3') -> str:
    return format_box(box, style)
