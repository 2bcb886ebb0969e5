"""A tiny Qwen2-architecture causal LM with a locally trained tokenizer, for CPU demos and tests.

It stands in for Qwen2.5-1.5B through exactly the same code path (``save_pretrained`` -> the head's
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``): a ``Qwen2TokenizerFast`` with
Qwen's special tokens and chat template (XTuner needs a bos-less Qwen tokenizer class, not a bare
``PreTrainedTokenizerFast``) and a ``Qwen2ForCausalLM``. Like a real frozen LLM, it is pretrained on text
(the captions in the chat format) before stage 1 sees it.
"""
import random
from typing import Iterable, List, Optional, Sequence

import torch

from granvit_mm.core.box_text import format_box
from granvit_mm.core.chat_format import chat_text
from granvit_mm.core.prompts import (bbox2caption_question, caption2bbox_answer, caption2bbox_question,
                                     global_caption_question)

from .fit import fit

SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
# Qwen2's pre-tokenizer split: digits one by one, which keeps box text like 0.125 compositional.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2's chat template (system default omitted), for apply_chat_template users.
CHAT_TEMPLATE = ("{% for message in messages %}"
                 "{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
                 "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\n' }}{% endif %}")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Byte-level BPE (Qwen2's split rule) trained on ``texts``, wrapped as ``Qwen2TokenizerFast``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None, eos_token='<|endoftext|>',
                              pad_token='<|endoftext|>', additional_special_tokens=SPECIAL_TOKENS[1:],
                              chat_template=CHAT_TEMPLATE, model_max_length=32768)


def build_tiny_qwen2(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     num_kv_heads: int = 2, intermediate_size: int = 256, max_position_embeddings: int = 2048,
                     seed: int = 0):
    """A randomly initialised ``Qwen2ForCausalLM`` (tied embeddings) sized to the tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=intermediate_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads,
                         num_key_value_heads=num_kv_heads, max_position_embeddings=max_position_embeddings,
                         tie_word_embeddings=True, rope_theta=10000.0, use_sliding_window=False,
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return Qwen2ForCausalLM(config)


def pretrain_lm(model, tokenizer, texts: Sequence[str], steps: int = 300, batch_size: int = 16,
                seq_len: int = 128, lr: float = 3e-3, seed: int = 0, log_every: int = 50) -> List[float]:
    """Next-token pretraining on ``texts`` cut into ``seq_len`` blocks (cosine lr); returns the losses."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    order = list(texts)
    rng.shuffle(order)
    stream: List[int] = []
    for text in order:
        stream += tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    n_blocks = max(1, len(stream) // seq_len)
    blocks = torch.tensor(stream[:n_blocks * seq_len] or stream, dtype=torch.long).view(n_blocks, -1)
    model.train()

    def loss_at(step):
        batch = blocks[torch.tensor([rng.randrange(n_blocks) for _ in range(batch_size)])]
        return model(input_ids=batch, labels=batch).loss

    losses = fit(model.parameters(), loss_at, steps, lr, log_prefix='tiny_llm', log_every=log_every)
    model.eval()
    return losses


def region_chat_corpus(records: Iterable[dict], box_style: str = 'decimal3', with_context: bool = False,
                       seed: int = 0) -> List[str]:
    """Stage-1/2 style texts from Gran records (docs/method.md format): captions alone and as chat turns.

    With ``with_context``, each turn is also written with a text description of the scene where the image
    goes (``{scene}\n{question}`` in place of ``<image>\n{question}``): the regions' captions with their
    boxes, or the global caption: a real LLM reads its context, and a tiny one pretrained only on
    context-free answers learns to ignore it. Off by default: 800 steps of a 2-layer, 64-wide Qwen2 did not
    learn to copy from such context (tried; docs/pretraining.md).
    """
    rng = random.Random(seed)
    texts = []
    for rec in records:
        side = float(max(rec.get('width', 1), rec.get('height', 1)))
        regions = [(r['caption'], [float(v) / side for v in r['bbox']]) for r in rec.get('regions', [])]
        listed = [f'{c} {format_box(b, box_style)}' for c, b in regions]
        rng.shuffle(listed)
        scenes = ['; '.join(listed)] + ([rec['caption']] if rec.get('caption') else [])
        if rec.get('caption'):
            texts.append(rec['caption'])
            texts.append(chat_text(global_caption_question(), rec['caption']))
            if with_context and listed:
                texts.append(chat_text(scenes[0] + '\n' + global_caption_question(), rec['caption']))
        for caption, box in regions:
            q_b2c = bbox2caption_question(box, box_style)
            q_c2b, a_c2b = caption2bbox_question(caption), caption2bbox_answer(box, box_style)
            texts.append(caption)
            texts.append(chat_text(q_b2c, caption))
            texts.append(chat_text(q_c2b, a_c2b))
            if with_context:
                texts.append(chat_text(rng.choice(scenes) + '\n' + q_b2c, caption))
                texts.append(chat_text(scenes[0] + '\n' + q_c2b, a_c2b))
    return texts


def toy_records(n: int = 64, seed: int = 0) -> List[dict]:
    """A few Gran-format records with made-up captions, for tests that need a tokenizer and an LM fast."""
    rng = random.Random(seed)
    colors = ['red', 'green', 'blue', 'yellow', 'white', 'black']
    shapes = ['circle', 'square', 'triangle', 'star', 'ring']
    records = []
    for _ in range(n):
        regions = []
        for _ in range(rng.randint(1, 4)):
            x1, y1 = rng.uniform(0, 40), rng.uniform(0, 40)
            box = [x1, y1, x1 + rng.uniform(8, 24), y1 + rng.uniform(8, 24)]
            caption = f'a {rng.choice(colors)} {rng.choice(shapes)}'
            regions.append(dict(bbox=box, caption=caption, kind='object'))
        caption = 'an image with ' + ' and '.join(r['caption'] for r in regions)
        records.append(dict(image='x.png', width=64, height=64, source='toy', caption=caption,
                            regions=regions))
    return records


def save_tiny_llm(out_dir: str, texts: Optional[Sequence[str]] = None, vocab_size: int = 512,
                  pretrain_steps: int = 0, seed: int = 0, pretrain_kwargs: Optional[dict] = None,
                  **model_kwargs) -> str:
    """Train the tokenizer, build (and optionally pretrain) the tiny LM, ``save_pretrained`` both."""
    texts = list(texts) if texts is not None else region_chat_corpus(toy_records(seed=seed))
    tokenizer = train_tokenizer(texts, vocab_size)
    model = build_tiny_qwen2(tokenizer, seed=seed, **model_kwargs)
    if pretrain_steps:
        pretrain_lm(model, tokenizer, texts, steps=pretrain_steps, seed=seed, **(pretrain_kwargs or {}))
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
