"""The LLM's chat format, encoded exactly as XTuner's LLaVA pipeline encodes it (stage 2).

Stage 1 must show the frozen LLM the same conversation layout that stage 2 trains with, so the template is
a dict shaped like ``xtuner.utils.PROMPT_TEMPLATE.<name>`` and the encoding follows XTuner's
``llava_map_fn`` -> ``template_map_fn`` -> ``encode_fn``: the image goes first in the first user input
(``<image>\\n{question}``), the text on either side of ``<image>`` is tokenised separately, the answer is
``output + SUFFIX`` (with loss), an eos follows only when ``SUFFIX_AS_EOS`` is false, and ``SEP`` closes the
turn without loss.
"""
from typing import Dict, List, Optional, Tuple

DEFAULT_IMAGE_TOKEN = '<image>'  # xtuner.utils.DEFAULT_IMAGE_TOKEN
IMAGE_TOKEN_INDEX = -200  # xtuner.utils.IMAGE_TOKEN_INDEX: the image placeholder id in ``input_ids``
IGNORE_INDEX = -100  # xtuner.utils.IGNORE_INDEX: labels that take no loss

# Copy of xtuner.utils.PROMPT_TEMPLATE.qwen_chat (xtuner 0.2.0), kept here so stage 1 needs no XTuner.
QWEN_CHAT = dict(
    SYSTEM='<|im_start|>system\n{system}<|im_end|>\n',
    INSTRUCTION='<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
    SUFFIX='<|im_end|>',
    SUFFIX_AS_EOS=True,
    SEP='\n',
    STOP_WORDS=['<|im_end|>', '<|endoftext|>'])


class ChatTemplateEncoder:
    """Token pieces of single-image, single-turn conversations in an XTuner prompt template.

    Every region turn is encoded as if it were the first (and only) turn of its own conversation; the
    packing in :mod:`.packing` then shares the prefix, so the LLM sees exactly the stage-2 format.
    """

    def __init__(self, tokenizer, template: Optional[Dict] = None, system: str = ''):
        self.tokenizer = tokenizer
        self.template = dict(QWEN_CHAT if template is None else template)
        self.system = system or ''
        self.bos_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        probe_a, _ = self._split_input('a')
        probe_b, _ = self._split_input('b')
        if probe_a != probe_b:
            raise ValueError('the template puts question text before the image; cannot share a prefix')
        self.prefix_ids = self.bos_ids + self._encode(probe_a)

    def _encode(self, text: str) -> List[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def _split_input(self, question: str) -> Tuple[str, str]:
        text = self.template['INSTRUCTION'].format(input=f'{DEFAULT_IMAGE_TOKEN}\n{question}', round=1)
        if self.system:
            text = self.template['SYSTEM'].format(system=self.system) + text
        before, after = text.split(DEFAULT_IMAGE_TOKEN)
        return before, after

    def prompt_ids(self, question: str) -> List[int]:
        """Tokens after the image up to the assistant's first answer token (what generation starts from)."""
        return self._encode(self._split_input(question)[1])

    def turn(self, question: str, answer: str) -> Tuple[List[int], List[int]]:
        """(ids, labels) of one turn after the image: loss on answer + SUFFIX (+ eos), none elsewhere."""
        ids = self.prompt_ids(question)
        labels = [IGNORE_INDEX] * len(ids)
        out = self._encode(answer + (self.template.get('SUFFIX') or ''))
        if not self.template.get('SUFFIX_AS_EOS', False):
            out = out + self.eos_ids
        ids, labels = ids + out, labels + out
        sep = self._encode(self.template.get('SEP') or '')
        return ids + sep, labels + [IGNORE_INDEX] * len(sep)

    def stop_token_ids(self) -> List[int]:
        """Token ids that end generation: single-token STOP_WORDS and eos."""
        ids = list(self.eos_ids)
        for word in self.template.get('STOP_WORDS', []):
            enc = self._encode(word)
            if len(enc) == 1 and enc[0] not in ids:
                ids.append(enc[0])
        return ids


def chat_text(question: str, answer: str, template: Optional[Dict] = None) -> str:
    """One text-only single-turn conversation in an XTuner template (qwen_chat by default)."""
    t = template or QWEN_CHAT
    return t['INSTRUCTION'].format(input=question, round=1) + answer + (t.get('SUFFIX') or '') + \
        (t.get('SEP') or '')
