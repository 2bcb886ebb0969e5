"""LLaVAInstructDataset: LLaVA instruction JSON -> XTuner items, bad records named or counted, never a
crash."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from granvit_mm.core.image_input import to_model_input
from granvit_mm.xtuner.instruct_dataset import BadInstructionRecord, LLaVAInstructDataset


def turn(who, text):
    return {'from': who, 'value': text}


GOOD = {'id': 'ok', 'image': 'a.png',
        'conversations': [turn('human', 'What is it?\n<image>'), turn('gpt', 'red'),
                          turn('human', 'And now?'), turn('gpt', 'blue')]}
TEXT_ONLY = {'id': 'text', 'conversations': [turn('human', 'hello'), turn('gpt', 'hi')]}
BAD = {
    'missing_image': {'id': 'b1', 'image': 'nowhere.png', 'conversations': GOOD['conversations']},
    'no_image_token': {'id': 'b2', 'image': 'a.png', 'conversations': [turn('human', 'q'), turn('gpt', 'a')]},
    'multiple_image_tokens': {'id': 'b3', 'image': 'a.png',
                              'conversations': [turn('human', '<image>\nq'), turn('gpt', 'a'),
                                                turn('human', '<image> again'), turn('gpt', 'b')]},
    'empty_answer': {'id': 'b4', 'image': 'a.png',
                     'conversations': [turn('human', '<image>\nq'), turn('gpt', ' ')]},
    'not_alternating': {'id': 'b5', 'image': 'a.png',
                        'conversations': [turn('human', '<image>\nq'), turn('human', 'q2'),
                                          turn('gpt', 'a')]},
    'too_long': {'id': 'b6', 'image': 'a.png',
                 'conversations': [turn('human', '<image>\n' + 'word ' * 400), turn('gpt', 'a')]},
}


@pytest.fixture()
def folder(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3),
                                                      dtype=np.uint8)).save(tmp_path / 'a.png')
    return tmp_path


def write(folder, records, name='data.json'):
    path = folder / name
    path.write_text(json.dumps(records))
    return str(path)


def make(folder, records, tiny_llm_dir, **kwargs):
    from transformers import AutoTokenizer
    kwargs.setdefault('max_length', 160)
    return LLaVAInstructDataset(write(folder, records), str(folder),
                                AutoTokenizer.from_pretrained(tiny_llm_dir),
                                image_size=32, num_visual_tokens=16, **kwargs)


def test_items_are_xtuner_llava_samples(folder, tiny_llm_dir):
    ds = make(folder, [GOOD, TEXT_ONLY], tiny_llm_dir)
    item = ds[0]
    ids, labels = item['input_ids'], item['labels']
    assert ids.count(IMAGE_TOKEN_INDEX) == 1 and len(ids) == len(labels)
    answer = ds.encoder.tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert answer.replace(' ', '').startswith('red') and 'blue' in answer  # loss on both answers
    img = np.asarray(Image.open(folder / 'a.png').convert('RGB'))
    torch.testing.assert_close(item['pixel_values'], torch.from_numpy(to_model_input(img, 32)[0]))
    text = ds[1]
    assert IMAGE_TOKEN_INDEX not in text['input_ids'] and not text['pixel_values'].any()
    assert ds.modality_length[0] > 0 > ds.modality_length[1]


@pytest.mark.parametrize('reason', sorted(BAD))
def test_bad_record_is_named(folder, tiny_llm_dir, reason):
    records = [GOOD, BAD[reason]]
    with pytest.raises(BadInstructionRecord) as info:
        ds = make(folder, records, tiny_llm_dir)
        for i in range(len(ds)):  # what the JSON alone cannot show is found when the record is loaded
            ds[i]
    err = info.value
    assert err.reason == reason
    assert 'data.json record 1' in str(err) and f'id {BAD[reason]["id"]}' in str(err)


def test_bad_records_are_counted_skips(folder, tiny_llm_dir):
    ds = make(folder, [GOOD] + list(BAD.values()), tiny_llm_dir, on_bad_record='skip')
    items = [ds[i] for i in range(len(ds))]
    assert all(it['input_ids'].count(IMAGE_TOKEN_INDEX) == 1 for it in items)
    assert ds.skips.records == {reason: 1 for reason in BAD}


def test_unchecked_missing_image_is_found_when_loading(folder, tiny_llm_dir):
    ds = make(folder, [GOOD, BAD['missing_image']], tiny_llm_dir, check_images=False, on_bad_record='skip')
    assert len(ds) == 2
    assert ds[1]['input_ids'] == ds[0]['input_ids']  # redrawn: the next record
    assert ds.skips.records == {'missing_image': 1}
