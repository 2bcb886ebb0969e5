"""The contracts every stage shares: box text and geometry, prompts, chat format and token ids, the Gran
record schema, the image pre-processing, the visual-token definition, the SigLIP <-> GranViT key map,
missing-path errors.

Stage 1 (MMEngine), stage 2 (XTuner), the exports, the inference API and the tools all import these, and
nothing restates them. This package imports no registry, mmcv, mmengine, model or dataset code (a test holds
the rule), so light users such as a web demo or a converter pay for nothing else.
"""
from .box_text import BOX_STYLES, box_quantum, format_box, parse_box
from .chat_format import (DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX, QWEN_CHAT,
                          ChatTemplateEncoder, chat_text)
from .checkpoint_layout import PROJECTOR_PREFIX, STAGE1_VIT_PREFIXES, split_checkpoint, strip_prefix
from .geometry import SquareGeometry, pad_to_square, square_resize
from .gran_record import (REGION_KINDS, BadRecordError, ValidationRules, dump_record, make_record, parse_line,
                          validate_record)
from .image_input import PAD_VALUE, PIXEL_MEAN, PIXEL_STD, to_model_input
from .paths import MissingPathError, check_path
from .prompts import (BBOX2CAPTION_PROMPT, CAPTION2BBOX_PROMPT, GLOBAL_CAPTION_PROMPT, TASKS,
                      bbox2caption_question, caption2bbox_answer, caption2bbox_question,
                      global_caption_question)
from .visual_tokens import DEFAULT_VISUAL_LAYER, granvit_token_kwargs, hf_llava_kwargs, select_visual_tokens

__all__ = [
    'BOX_STYLES', 'box_quantum', 'format_box', 'parse_box', 'DEFAULT_IMAGE_TOKEN', 'IGNORE_INDEX',
    'IMAGE_TOKEN_INDEX', 'QWEN_CHAT', 'ChatTemplateEncoder', 'chat_text', 'SquareGeometry', 'pad_to_square',
    'square_resize', 'REGION_KINDS', 'BadRecordError', 'ValidationRules', 'dump_record', 'make_record',
    'parse_line', 'validate_record', 'PAD_VALUE', 'PIXEL_MEAN', 'PIXEL_STD', 'to_model_input',
    'MissingPathError', 'check_path', 'BBOX2CAPTION_PROMPT',
    'CAPTION2BBOX_PROMPT', 'GLOBAL_CAPTION_PROMPT', 'TASKS', 'bbox2caption_question', 'caption2bbox_answer',
    'caption2bbox_question', 'global_caption_question', 'DEFAULT_VISUAL_LAYER', 'granvit_token_kwargs',
    'hf_llava_kwargs', 'select_visual_tokens', 'PROJECTOR_PREFIX', 'STAGE1_VIT_PREFIXES', 'split_checkpoint',
    'strip_prefix'
]
