"""Gran tasks -> an XTuner LLaVA conversation, tokenised by XTuner's own functions.

Stage 2 trains under ``xtuner train``, so its conversations are XTuner's LLaVA data: the LLaVA JSON layout
(``{'from': 'human' | 'gpt', 'value': ...}`` turns, ``<image>`` only in the first user turn) mapped by
``llava_map_fn`` -> ``template_map_fn`` -> ``encode_fn(with_image_token=True)``, exactly the calls
``xtuner.dataset.LLaVADataset`` makes through ``process_hf_dataset``. The difference is only when: XTuner maps
the whole JSON up front; here one conversation is encoded when its record is read.
"""
from typing import Callable, Dict, List, Optional, Sequence, Union

from mmengine.config import Config, ConfigDict
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.dataset.utils import encode_fn
from xtuner.registry import BUILDER

from granvit_mm.core.chat_format import DEFAULT_IMAGE_TOKEN, QWEN_CHAT

__all__ = ['llava_conversation', 'LLaVAConversationEncoder', 'build_from_cfg']


def build_from_cfg(obj):
    """XTuner config style: a ``dict(type=...)`` is built with XTuner's BUILDER, anything else is kept."""
    return BUILDER.build(obj) if isinstance(obj, (dict, Config, ConfigDict)) else obj


def llava_conversation(tasks: Sequence[dict]) -> List[Dict[str, str]]:
    """Task dicts (``region_tasks.build_tasks``) -> LLaVA JSON ``conversations`` of one image.

    One user/assistant pair a task, in the given order; ``<image>\\n`` opens the first question only, as in
    LLaVA's data (XTuner's ``llava_map_fn`` puts it there too).
    """
    turns = []
    for i, task in enumerate(tasks):
        question = f'{DEFAULT_IMAGE_TOKEN}\n{task["question"]}' if i == 0 else task['question']
        turns.append({'from': 'human', 'value': question})
        turns.append({'from': 'gpt', 'value': task['answer']})
    return turns


class LLaVAConversationEncoder:
    """LLaVA JSON conversations -> ``dict(input_ids, labels)`` exactly as XTuner's ``LLaVADataset`` does.

    Args:
        tokenizer: a tokenizer, or its XTuner config dict (``dict(type=AutoTokenizer.from_pretrained, ...)``).
        template_map_fn: XTuner's ``dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.x)`` or the
            built callable; default: ``granvit_mm.core.chat_format.QWEN_CHAT`` (XTuner's ``qwen_chat``).
        max_length: XTuner's truncation length of ``input_ids`` (the image counts as one placeholder here;
            the LLM sees its patch tokens in its place, so leave room for them as XTuner's configs do).
    """

    def __init__(self, tokenizer, template_map_fn: Optional[Union[dict, Callable]] = None,
                 max_length: int = 2048) -> None:
        self.tokenizer = build_from_cfg(tokenizer)
        if template_map_fn is None:
            template_map_fn = template_map_fn_factory(ConfigDict(QWEN_CHAT))
        self.template_map_fn = build_from_cfg(template_map_fn)
        self.max_length = int(max_length)

    def __call__(self, conversations: List[Dict[str, str]]) -> Dict[str, List[int]]:
        example = llava_map_fn({'conversations': [dict(turn) for turn in conversations]})  # it edits turns
        example = self.template_map_fn(example)
        if not example['conversation']:
            raise ValueError('the conversation has no user/assistant pair')
        return encode_fn(example, self.tokenizer, self.max_length, input_ids_with_output=True,
                         with_image_token=True)

    @staticmethod
    def has_loss(labels: Sequence[int]) -> bool:
        """XTuner drops samples without a single label to learn (e.g. cut off by ``max_length``)."""
        return any(label >= 0 for label in labels)
