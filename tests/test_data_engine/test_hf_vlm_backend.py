"""The transformers image-text-to-text backend on a tiny Qwen2-VL built from a config (random weights, a
word-level tokenizer with Qwen2-VL's special tokens and a chat template), saved and loaded back the way a real
checkpoint directory is: the region questions carry the box text, answers come back one per question."""
import numpy as np
import pytest

SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>',
           '<|image_pad|>',
           '<|video_pad|>']
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
            "{% else %}{{ c['text'] }}"
            "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% endif %}")


@pytest.fixture(scope='module')
def tiny_qwen2vl(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (Qwen2TokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor)
    words = ['[UNK]'] + SPECIAL + ('a the red blue box image region of in describe content normalized '
                                   'bounding coordinates no more than 10 words detail what is shown one '
                                   'paragraph').split() + list('0123456789.,[]')
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='[UNK]'))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=r'(<\|[a-z_]+\|>|\s+|[.,\[\]0-9])', behavior='isolated')
    tok.decoder = decoders.WordPiece(prefix='##')
    fast = Qwen2TokenizerFast(tokenizer_object=tok, unk_token='[UNK]', pad_token='<|endoftext|>',
                              eos_token='<|im_end|>', additional_special_tokens=SPECIAL)
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL}
    cfg = Qwen2VLConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=len(words), max_position_embeddings=2048,
                        rope_scaling=dict(type='mrope', mrope_section=[1, 1, 2]),
                        image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
                        vision_start_token_id=ids['<|vision_start|>'],
                        vision_end_token_id=ids['<|vision_end|>'],
                        eos_token_id=ids['<|im_end|>'], pad_token_id=ids['<|endoftext|>'],
                        vision_config=dict(depth=1, embed_dim=16, num_heads=2, hidden_size=32, patch_size=14,
                                           spatial_merge_size=2, temporal_patch_size=2, mlp_ratio=2))
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg)
    path = str(tmp_path_factory.mktemp('tiny_qwen2vl'))
    model.save_pretrained(path)
    proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=56 * 56),
                            tokenizer=fast, chat_template=TEMPLATE)
    proc.save_pretrained(path)
    return path


def test_hf_backend_answers_every_question_with_the_box_in_the_prompt(tiny_qwen2vl, monkeypatch):
    from granvit_mm.data_engine import CaptionRegions
    from granvit_mm.data_engine.item import make_item
    stage = CaptionRegions(backend=dict(type='HFVLMCaptioner', model_path=tiny_qwen2vl, batch_size=2,
                                        max_new_tokens=14, box_style='int999'), max_region_words=5)
    backend = stage.backend
    seen = []
    real_ask = backend.ask
    monkeypatch.setattr(backend, 'ask', lambda images, qs: seen.extend(qs) or real_ask(images, qs))
    items = []
    for i, (h, w) in enumerate([(40, 60), (56, 30)]):
        it = make_item(i, '', f'{i}.png', 'x', [dict(bbox=[0, 0, w / 2, h / 2], caption='', kind='object'),
                                                dict(bbox=[1, 2, 3, 4], caption='KEEP', kind='text')], w, h)
        it['pixels'] = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        it['given_boxes'] = False
        items.append(it)
    stage(items)
    assert [q for _, q in seen] == [backend.global_prompt,
                                    backend.region_prompt.format(box='[0, 0, 500, 500]')] * 2
    for it in items:
        assert isinstance(it['caption'], str) and it['provenance']['captions'].startswith('hf:')
        assert len(it['regions'][0]['caption'].split()) <= 5 and it['regions'][1]['caption'] == 'KEEP'
