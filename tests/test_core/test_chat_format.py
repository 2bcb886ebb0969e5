"""The chat format's token pieces, on a character-level tokenizer whose ids can be read back by hand.

(tests/test_models/test_heads/test_region_ar_head.py checks the same pieces against XTuner's own encoding with
a real Qwen2 tokenizer; these cover the template options that qwen_chat does not exercise: a system prompt, a
BOS, an eos after the answer, templates without SUFFIX / SEP, stop words.)
"""
import pytest

from granvit_mm.core.chat_format import (DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX, QWEN_CHAT,
                                         ChatTemplateEncoder, chat_text)

SPECIAL = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<s>', '</s>']


class CharTokenizer:
    """One id per character (its code point), one id (1000 + i) per special token."""

    def __init__(self, bos=None, eos=1002):
        self.bos_token_id, self.eos_token_id = bos, eos
        self.calls = []

    def encode(self, text, add_special_tokens=True):
        assert add_special_tokens is False  # XTuner's encode_fn adds none inside a conversation
        self.calls.append(text)
        ids = []
        while text:
            for i, tok in enumerate(SPECIAL):
                if text.startswith(tok):
                    ids.append(1000 + i)
                    text = text[len(tok):]
                    break
            else:
                ids.append(ord(text[0]))
                text = text[1:]
        return ids

    def decode(self, ids):
        return ''.join(SPECIAL[i - 1000] if i >= 1000 else chr(i) for i in ids)


def test_constants_are_xtuners():
    assert (DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX, IGNORE_INDEX) == ('<image>', -200, -100)


def test_qwen_chat_turn_by_hand():
    tok = CharTokenizer()
    enc = ChatTemplateEncoder(tok)
    assert enc.template == QWEN_CHAT and enc.template is not QWEN_CHAT  # a copy: callers may edit theirs
    assert enc.system == '' and enc.bos_ids == [] and enc.eos_ids == [1002]
    assert tok.decode(enc.prefix_ids) == '<|im_start|>user\n'
    assert tok.decode(enc.prompt_ids('Q?')) == '\nQ?<|im_end|>\n<|im_start|>assistant\n'
    ids, labels = enc.turn('Q?', 'A.')
    assert tok.decode(ids) == '\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n'
    n_prompt = len(enc.prompt_ids('Q?'))
    # loss on the answer and SUFFIX only (SUFFIX_AS_EOS: no extra eos); the SEP takes none
    assert labels == [IGNORE_INDEX] * n_prompt + tok.encode('A.<|im_end|>', False) + [IGNORE_INDEX]
    assert enc.stop_token_ids() == [1002, 1001]  # eos, then <|im_end|> (<|endoftext|> is the eos already)


def test_system_prompt_goes_before_the_image():
    tok = CharTokenizer()
    enc = ChatTemplateEncoder(tok, system='Be brief.')
    assert enc.system == 'Be brief.'
    assert tok.decode(enc.prefix_ids) == '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n'
    assert tok.decode(enc.prompt_ids('Q?')) == '\nQ?<|im_end|>\n<|im_start|>assistant\n'
    assert ChatTemplateEncoder(tok, system=None).prefix_ids == ChatTemplateEncoder(tok).prefix_ids


def test_template_with_bos_eos_after_the_answer_and_no_sep():
    """A Llama-2-like template: BOS first, the answer ends with an eos that takes loss, no SEP, no SUFFIX."""
    tok = CharTokenizer(bos=1003, eos=1004)
    template = dict(SYSTEM='[SYS]{system}[/SYS]', INSTRUCTION='[INST] {input} [/INST]', SUFFIX=None,
                    SUFFIX_AS_EOS=False, SEP=None, STOP_WORDS=['</s>', 'END'])
    enc = ChatTemplateEncoder(tok, template)
    assert enc.bos_ids == [1003] and enc.eos_ids == [1004]
    assert enc.prefix_ids == [1003] + tok.encode('[INST] ', False)
    ids, labels = enc.turn('Q', 'A')
    assert tok.decode(ids) == '\nQ [/INST]A</s>'
    assert labels == [IGNORE_INDEX] * len('\nQ [/INST]') + [ord('A'), 1004]
    assert enc.stop_token_ids() == [1004]  # 'END' is three tokens: not a stop token; '</s>' is the eos
    # a template that leaves the eos flag out gets the eos too
    no_flag = {k: v for k, v in template.items() if k != 'SUFFIX_AS_EOS'}
    assert ChatTemplateEncoder(tok, no_flag).turn('Q', 'A') == (ids, labels)
    # a template without STOP_WORDS stops at the eos alone
    no_stop = {k: v for k, v in template.items() if k != 'STOP_WORDS'}
    assert ChatTemplateEncoder(tok, no_stop).stop_token_ids() == [1004]


def test_tokenizer_without_eos_and_empty_pieces_are_not_encoded():
    tok = CharTokenizer(eos=None)
    template = dict(QWEN_CHAT, SUFFIX='', SUFFIX_AS_EOS=False, SEP='', STOP_WORDS=['<|im_end|>', 'ab'])
    enc = ChatTemplateEncoder(tok, template)
    assert enc.eos_ids == []
    tok.calls.clear()
    ids, labels = enc.turn('Q', 'A')
    assert tok.decode(ids) == '\nQ<|im_end|>\n<|im_start|>assistant\nA'
    assert labels[-1] == ord('A') and labels[:-1] == [IGNORE_INDEX] * (len(ids) - 1)
    assert '' not in tok.calls  # empty text is never sent to the tokenizer
    assert enc.stop_token_ids() == [1001]


def test_template_round_is_the_first():
    """Templates that number the turns (``{round}``) number each region turn as the first."""
    tok = CharTokenizer()
    enc = ChatTemplateEncoder(tok, dict(QWEN_CHAT, INSTRUCTION='#{round} U: {input} #{round} A: '))
    assert tok.decode(enc.prefix_ids) == '#1 U: '
    assert tok.decode(enc.prompt_ids('Q')) == '\nQ #1 A: '


def test_template_must_put_the_image_first():
    tok = CharTokenizer()
    with pytest.raises(ValueError):  # the image token written into the template itself: no single split
        ChatTemplateEncoder(tok, dict(QWEN_CHAT, INSTRUCTION='<image> {input}'))


def test_chat_text():
    assert chat_text('Q?', 'A.') == '<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n'
    assert chat_text('Q?', 'A.', QWEN_CHAT) == chat_text('Q?', 'A.')
    bare = dict(INSTRUCTION='U: {input} #{round} B: ', SUFFIX=None)
    assert chat_text('Q?', 'A.', bare) == 'U: Q? #1 B: A.'
    assert chat_text('Q?', 'A.', dict(bare, SUFFIX='</s>', SEP='\n\n')) == 'U: Q? #1 B: A.</s>\n\n'
