"""GranLLaVADataset: Gran records -> XTuner LLaVA items, token for token as XTuner's own LLaVADataset."""
import json
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from granvit_mm.core.box_text import format_box
from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX, QWEN_CHAT, ChatTemplateEncoder
from granvit_mm.core.gran_record import BadRecordError
from granvit_mm.core.image_input import to_model_input
from granvit_mm.core.prompts import caption2bbox_question, global_caption_question
from granvit_mm.toy.tiny_llm import region_chat_corpus, toy_records, train_tokenizer
from granvit_mm.xtuner.gran_conversation import LLaVAConversationEncoder, llava_conversation
from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset

W, H = 40, 30  # non-square: boxes are normalised by the padded side, 40
REGIONS = [dict(bbox=[2, 3, 20, 25], caption='a red square', kind='object'),
           dict(bbox=[10, 0, 40, 30], caption='a blue circle', kind='object'),
           dict(bbox=[0, 10, 8, 20], caption='EXIT', kind='text')]
GLOBAL = 'a red square beside a blue circle'


@pytest.fixture(scope='module')
def tokenizer():
    return train_tokenizer(region_chat_corpus(toy_records(16)), vocab_size=400)


def _write_jsonl(path, records):
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + '\n')
    return str(path)


def _record(image='a.png', regions=REGIONS, caption=GLOBAL, w=W, h=H):
    return dict(image=image, width=w, height=h, source='test', caption=caption, regions=regions)


@pytest.fixture(scope='module')
def synth_dir(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    out = str(tmp_path_factory.mktemp('gran_synth'))
    generate(out, num_train=12, num_val=4, image_size=96, seed=3)
    return out


@pytest.fixture()
def one_image(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(tmp_path / 'a.png')
    return tmp_path


def _dataset(root, tokenizer, ann='ann.jsonl', **kw):
    kw.setdefault('image_size', 16)
    return GranLLaVADataset(ann, tokenizer, data_root=str(root), **kw)


def _hand_conversation(caption_turn='last'):
    """The conversation of REGIONS with tasks global_caption=1, caption2bbox=2, task_mode='first'; stage 2
    asks the global caption after the Caption2Bbox turns (``'last'``, the default) so that no box answer can
    read it, or before them (``'first'``, as stage 1 does)."""
    box0 = format_box([2 / 40, 3 / 40, 20 / 40, 25 / 40])
    box1 = format_box([10 / 40, 0 / 40, 40 / 40, 30 / 40])
    assert box0 == '[0.050, 0.075, 0.500, 0.625]' and box1 == '[0.250, 0.000, 1.000, 0.750]'
    caption = [global_caption_question(), GLOBAL]
    grounding = [caption2bbox_question('a red square'), box0, caption2bbox_question('a blue circle'), box1]
    texts = caption + grounding if caption_turn == 'first' else grounding + caption
    texts[0] = '<image>\n' + texts[0]  # the image goes with the first user turn, whichever task it is
    return [{'from': 'human' if i % 2 == 0 else 'gpt', 'value': t} for i, t in enumerate(texts)]


def test_conversation_from_record_is_the_hand_checked_one(one_image, tokenizer):
    _write_jsonl(one_image / 'ann.jsonl', [_record()])
    ds = _dataset(one_image, tokenizer, tasks=dict(global_caption=1, caption2bbox=2), task_mode='first',
                  return_meta=True)
    item = ds[0]
    assert llava_conversation(item['tasks']) == _hand_conversation('last')
    assert item['tasks'][0]['box'] == pytest.approx([0.05, 0.075, 0.5, 0.625])
    first = _dataset(one_image, tokenizer, tasks=dict(global_caption=1, caption2bbox=2), task_mode='first',
                     return_meta=True, caption_turn='first')[0]
    assert llava_conversation(first['tasks']) == _hand_conversation('first')
    with pytest.raises(ValueError, match='caption_turn'):
        _dataset(one_image, tokenizer, caption_turn='middle')


def test_tokens_equal_xtuner_llava_dataset(one_image, tokenizer):
    """The same conversation through xtuner.dataset.LLaVADataset (llava_map_fn + qwen_chat + encode_fn)."""
    from xtuner.dataset import LLaVADataset
    from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE
    assert dict(PROMPT_TEMPLATE.qwen_chat) == QWEN_CHAT
    _write_jsonl(one_image / 'ann.jsonl', [_record()])
    with open(one_image / 'llava.json', 'w') as f:
        json.dump([dict(id='0', image='a.png', conversations=_hand_conversation())], f)
    ref = LLaVADataset(
        image_folder=str(one_image), image_processor=None, data_path=str(one_image / 'llava.json'),
        tokenizer=tokenizer, dataset_map_fn=llava_map_fn,
        template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.qwen_chat),
        max_length=2048).text_data[0]
    ours = _dataset(one_image, tokenizer, tasks=dict(global_caption=1, caption2bbox=2), task_mode='first',
                    template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.qwen_chat))[0]
    assert ours['input_ids'] == ref['input_ids']
    assert ours['labels'] == ref['labels']
    assert ours['input_ids'].count(IMAGE_TOKEN_INDEX) == 1  # <image> only in the first user turn
    # the default template is the same qwen_chat
    assert _dataset(one_image, tokenizer, tasks=dict(global_caption=1, caption2bbox=2),
                    task_mode='first')[0]['input_ids'] == ref['input_ids']
    # the loss falls on the three answers (+ <|im_end|>) only
    answers = tokenizer.decode([t for t in ref['labels'] if t != IGNORE_INDEX])
    assert answers == ('[0.050, 0.075, 0.500, 0.625]<|im_end|>[0.250, 0.000, 1.000, 0.750]<|im_end|>'
                       + GLOBAL + '<|im_end|>')


def test_stage1_chat_encoder_agrees_with_xtuner_encode_fn(tokenizer):
    """Stage 1's ChatTemplateEncoder (and the eval prompts built with it) = XTuner's encode_fn."""
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE
    q, a = caption2bbox_question('a red square'), '[0.050, 0.075, 0.500, 0.625]'
    conv = [{'from': 'human', 'value': '<image>\n' + q}, {'from': 'gpt', 'value': a}]
    xt = LLaVAConversationEncoder(tokenizer)(conv)
    enc = ChatTemplateEncoder(tokenizer, QWEN_CHAT)
    ids, labels = enc.turn(q, a)
    assert enc.prefix_ids + [IMAGE_TOKEN_INDEX] + ids == xt['input_ids']
    assert [IGNORE_INDEX] * (len(enc.prefix_ids) + 1) + labels == xt['labels']
    # generation prompt: XTuner's encode_fn without the output
    example = template_map_fn_factory(PROMPT_TEMPLATE.qwen_chat)(
        dict(conversation=[dict(input='<image>\n' + q, output='')]))
    prompt = encode_fn(example, tokenizer, 2048, input_ids_with_output=False, with_image_token=True)
    assert enc.prefix_ids + [IMAGE_TOKEN_INDEX] + enc.prompt_ids(q) == prompt['input_ids']


def test_pixels_are_the_shared_model_input(one_image, tokenizer):
    _write_jsonl(one_image / 'ann.jsonl', [_record()])
    item = _dataset(one_image, tokenizer, image_size=20)[0]
    rgb = np.asarray(Image.open(one_image / 'a.png').convert('RGB'))
    expected, _ = to_model_input(rgb, 20)
    assert item['pixel_values'].dtype == torch.float32
    assert torch.equal(item['pixel_values'], torch.from_numpy(expected))
    # padded at the bottom (30 -> 40 rows): the last rows are the pad colour, about 0 after normalisation
    assert item['pixel_values'][:, -3:].abs().max() < 0.01


def test_collate_sampler_and_epoch_draws(synth_dir, tokenizer):
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.dataset.samplers import LengthGroupedSampler
    ds = GranLLaVADataset('annotations/train.jsonl', tokenizer, data_root=synth_dir,
                          data_prefix=dict(img_path='images/'), image_size=32, tasks=dict(caption2bbox=1))
    batch = default_collate_fn([ds[0], ds[1], ds[2]])['data']
    assert batch['pixel_values'].shape == (3, 3, 32, 32)
    assert (batch['input_ids'] == IMAGE_TOKEN_INDEX).sum(1).tolist() == [1, 1, 1]
    lengths = ds.modality_length
    assert len(lengths) == len(ds) == 12 and all(v > 0 for v in lengths)
    with open(f'{synth_dir}/annotations/train.jsonl', 'rb') as f:
        assert lengths[5] == max(len(f.readlines()[5]) // 4, 1)
    sampler = LengthGroupedSampler(ds, per_device_batch_size=4, length_property='modality_length', seed=0)
    assert sorted(sampler) == list(range(12))
    # the epoch-tagging sampler through a torch DataLoader, as XTuner's Runner builds it
    from torch.utils.data import DataLoader

    from granvit_mm.datasets import EpochTaggedSampler
    tagged = EpochTaggedSampler(ds, shuffle=False)
    tagged.set_epoch(3)
    first = next(iter(DataLoader(ds, batch_size=2, sampler=tagged, collate_fn=default_collate_fn)))['data']
    expected = default_collate_fn([ds[(3, 0)], ds[(3, 1)]])['data']
    assert torch.equal(first['input_ids'], expected['input_ids'])
    # (epoch, index) draws: fixed per epoch, different across epochs (one region of several)
    many = [i for i in range(len(ds)) if len(ds.get_data_info(i)['region_captions']) > 2]
    assert ds[(0, many[0])]['input_ids'] == ds[many[0]]['input_ids']
    assert any(ds[(e, many[0])]['input_ids'] != ds[many[0]]['input_ids'] for e in range(1, 6))
    # the subset and the pickled copy (spawned dataloader workers) give the same items
    sub = ds.get_subset([3, 1])
    assert sub[1]['input_ids'] == ds[1]['input_ids'] and len(sub.modality_length) == 2
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[4]['input_ids'] == ds[4]['input_ids']
    assert torch.equal(clone[4]['pixel_values'], ds[4]['pixel_values'])


def _bad_file(root):
    return _write_jsonl(root / 'ann.jsonl', [
        _record(),
        '{"image": "a.png", "width": 40,',  # malformed JSON, line 2
        _record(regions=[dict(bbox=[0, 0, 80, 20], caption='too wide')]),  # line 3: box outside the image
        _record(image='missing.png'),  # line 4
    ])


def test_bad_records_skip_with_a_deterministic_redraw(one_image, tokenizer):
    _bad_file(one_image)
    ds = _dataset(one_image, tokenizer, on_bad_record='skip')
    good = ds[0]['input_ids']
    for i in (1, 2, 3):
        assert ds[i]['input_ids'] == good  # the only good record is what every redraw lands on
    assert ds.skips.records['json'] >= 1
    assert ds.skips.records['bbox_out_of_image'] >= 1
    assert ds.skips.records['image_missing'] >= 1


@pytest.mark.parametrize('idx,where,reason', [(1, 'ann.jsonl:2', 'json'),
                                              (2, "ann.jsonl:3 field 'regions[0].bbox'", 'bbox_out_of_image'),
                                              (3, "ann.jsonl:4 field 'image'", 'image_missing')])
def test_bad_records_raise_naming_shard_and_line(one_image, tokenizer, idx, where, reason):
    _bad_file(one_image)
    ds = _dataset(one_image, tokenizer, test_mode=True)  # test_mode: 'raise'
    with pytest.raises(BadRecordError, match=re.escape(where) + rf'.*\[{reason}\]'):
        ds[idx]


def test_truncated_conversation_without_answer_is_a_bad_record(one_image, tokenizer):
    _write_jsonl(one_image / 'ann.jsonl', [_record()])
    full = _dataset(one_image, tokenizer, test_mode=True)[0]
    first_answer = next(i for i, t in enumerate(full['labels']) if t >= 0)
    cut = _dataset(one_image, tokenizer, max_length=first_answer + 1, test_mode=True)[0]
    assert cut['input_ids'] == full['input_ids'][:first_answer + 1]  # truncated like XTuner
    with pytest.raises(BadRecordError, match=rf'max_length={first_answer}.*\[no_loss_tokens\]'):
        _dataset(one_image, tokenizer, max_length=first_answer, test_mode=True)[0]


def test_text_item_needs_no_image(tmp_path, tokenizer):
    _write_jsonl(tmp_path / 'ann.jsonl', [_record(image='not_there.png')])
    ds = _dataset(tmp_path, tokenizer, tasks=dict(caption2bbox=1), task_mode='first', test_mode=True)
    item = ds.text_item(0)
    assert set(item) == {'input_ids', 'labels'}
    assert tokenizer.decode([t for t in item['labels'] if t >= 0]) == '[0.050, 0.075, 0.500, 0.625]<|im_end|>'
    with pytest.raises(BadRecordError, match='image_missing'):
        ds[0]


def test_pipeline_is_not_configurable_from_outside(tmp_path, tokenizer):
    _write_jsonl(tmp_path / 'ann.jsonl', [_record()])
    with pytest.raises(ValueError, match='own pipeline'):
        _dataset(tmp_path, tokenizer, pipeline=[])
