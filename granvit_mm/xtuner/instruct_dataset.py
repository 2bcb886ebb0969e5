"""LLaVAInstructDataset: LLaVA-format instruction data (LLaVA-665k, Open-LLaVA-NeXT) for stage 3 under XTuner.

The records are LLaVA's JSON (``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}, ...]}``,
a JSON list or JSONL); conversations are tokenised by XTuner's own functions (``LLaVAConversationEncoder``:
``llava_map_fn`` -> ``template_map_fn`` -> ``encode_fn``) and images go through GranViT's pre-processing
(``core.image_input``: pad right/bottom, resize, SigLIP normalisation), so stage 3 sees what stages 1-2 saw.
What differs from ``xtuner.dataset.LLaVADataset`` is bad input: XTuner tokenises everything up front,
truncates long texts silently and crashes mid-run on a missing image; here every record is checked, and a bad
one is either an error naming the file and the record (``on_bad_record='raise'``) or a counted, logged skip
(``'skip'``: dropped up front when the JSON shows it, redrawn deterministically when found while loading).
"""
import json
import os.path as osp
from typing import Any, Dict, List

import torch
from torch.utils.data import Dataset

from granvit_mm.core.chat_format import DEFAULT_IMAGE_TOKEN
from granvit_mm.core.gran_record import BadRecordError
from granvit_mm.core.image_input import as_rgb_uint8, to_model_input
from granvit_mm.datasets.skip_counter import SkipCounter

from .gran_conversation import LLaVAConversationEncoder

__all__ = ['LLaVAInstructDataset', 'BadInstructionRecord', 'check_conversation']


class BadInstructionRecord(BadRecordError):
    """An instruction record that cannot be trained on; says which file and which record (index and id)."""

    def _text(self) -> str:
        where = f'{self.shard} record {self.line}' + (f' (id {self.field})' if self.field else '')
        return f'bad instruction record in {where}: {self.message} [{self.reason}]'

    def __reduce__(self):
        return (BadInstructionRecord, (self.reason, self.message, self.shard, self.line, self.field))


def check_conversation(record: Any) -> None:
    """Raise ``BadInstructionRecord`` (location unset) for what the JSON alone shows is wrong.

    LLaVA's layout: turns alternate human, gpt, human, gpt...; every answer has text; an image record has
    exactly one ``<image>`` in its human turns, a text-only record none.
    """
    def bad(reason, message):
        return BadInstructionRecord(reason, message)

    if not isinstance(record, dict) or not isinstance(record.get('conversations'), list):
        raise bad('no_conversations', 'expected an object with a "conversations" list')
    turns = record['conversations']
    if not turns:
        raise bad('no_conversations', '"conversations" is empty')
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get('value'), str):
            raise bad('bad_turn', f'turn {i} is not {{"from": ..., "value": "<text>"}}')
        expected = 'human' if i % 2 == 0 else 'gpt'
        if turn.get('from') != expected:
            raise bad('not_alternating', f'turn {i} is from {turn.get("from")!r}, expected {expected!r} '
                      '(turns must alternate human, gpt, ...)')
        if expected == 'gpt' and not turn['value'].strip():
            raise bad('empty_answer', f'turn {i} (an answer) is empty')
    if len(turns) % 2:
        raise bad('not_alternating', 'the last turn is a question without an answer')
    n_tokens = sum(t['value'].count(DEFAULT_IMAGE_TOKEN) for t in turns)
    if any(DEFAULT_IMAGE_TOKEN in t['value'] for t in turns[1::2]):
        raise bad('image_token_in_answer', f'an answer holds {DEFAULT_IMAGE_TOKEN}')
    if record.get('image') is not None:
        if not isinstance(record['image'], str):
            raise bad('bad_image', f'"image" must be one path, got {type(record["image"]).__name__} '
                      '(one image per record)')
        if n_tokens == 0:
            raise bad('no_image_token', f'the record has an image but no {DEFAULT_IMAGE_TOKEN} token')
        if n_tokens > 1:
            raise bad('multiple_image_tokens', f'{n_tokens} {DEFAULT_IMAGE_TOKEN} tokens for one image')
    elif n_tokens:
        raise bad('image_token_without_image', f'{DEFAULT_IMAGE_TOKEN} in a record without "image"')


def load_records(path: str) -> List[dict]:
    """A JSON list or JSONL file (an unparsable line names its line number)."""
    with open(path) as f:
        if path.endswith('.jsonl'):
            records = []
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise BadInstructionRecord('bad_json', str(err), path, i) from None
            return records
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f'{path}: expected a JSON list of LLaVA records (or a .jsonl file)')
    return data


class LLaVAInstructDataset(Dataset):
    """LLaVA instruction JSON -> XTuner LLaVA items ``dict(input_ids, labels, pixel_values)``.

    Args:
        data_path: the JSON list / JSONL of LLaVA records.
        image_folder: directory the records' ``image`` paths are relative to.
        tokenizer: a tokenizer or its XTuner config dict.
        image_size: the square input side (the vision tower's ``image_size``).
        template_map_fn: XTuner's ``dict(type=template_map_fn_factory, template=...)``; default qwen_chat.
        max_length: the LLM's context for one sample: text tokens + ``num_visual_tokens`` for the image. A
            longer record is bad (``too_long``), never silently truncated (XTuner truncates).
        num_visual_tokens: tokens an image takes in the LLM (``core.visual_tokens.num_visual_tokens``).
        check_images: look for every image file up front (a missing one is then found before training).
        on_bad_record: 'raise' (an error naming file, record index and id) or 'skip' (counted and logged).
        max_refetch: with 'skip', how many following records to try before giving up.
    """

    def __init__(self, data_path: str, image_folder: str, tokenizer, image_size: int = 512,
                 template_map_fn=None, max_length: int = 2048, num_visual_tokens: int = 0,
                 check_images: bool = True, on_bad_record: str = 'raise', max_refetch: int = 100) -> None:
        if on_bad_record not in ('raise', 'skip'):
            raise ValueError(f"on_bad_record must be 'raise' or 'skip', got {on_bad_record!r}")
        self.data_path = data_path
        self.image_folder = image_folder
        self.image_size = int(image_size)
        self.max_length = int(max_length)
        self.num_visual_tokens = int(num_visual_tokens)
        self.on_bad_record = on_bad_record
        self.max_refetch = int(max_refetch)
        # no truncation: a record longer than max_length is reported (text()), not cut
        self.encoder = LLaVAConversationEncoder(tokenizer, template_map_fn, max_length=2**31 - 1)
        self.skips = SkipCounter(name='LLaVAInstructDataset')
        self.records: List[dict] = []
        self.indices: List[int] = []  # position in the file of each kept record
        for i, rec in enumerate(load_records(data_path)):
            try:
                check_conversation(rec)
                if check_images and rec.get('image') is not None:
                    self.image_path(rec)
            except BadInstructionRecord as err:
                self._bad(self._locate(err, i, rec))
                continue
            self.records.append(rec)
            self.indices.append(i)
        if not self.records:
            raise ValueError(f'{data_path}: no usable instruction record ({self.skips.summary()})')

    def _locate(self, err: BadInstructionRecord, index: int, rec: Any) -> BadInstructionRecord:
        err.locate(self.data_path, index)
        err.field = str(rec.get('id', '')) if isinstance(rec, dict) else ''
        err.args = (err._text(), )
        return err

    def _bad(self, err: BadInstructionRecord) -> None:
        if self.on_bad_record == 'raise':
            raise err
        self.skips.skip(err)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def modality_length(self) -> List[int]:
        """XTuner's ``LengthGroupedSampler`` hint: characters / 4, negative for text-only records."""
        return [(1 if r.get('image') is not None else -1) *
                max(1, sum(len(t['value']) for t in r['conversations']) // 4) for r in self.records]

    def text(self, index: int) -> Dict[str, list]:
        """``input_ids`` / ``labels`` of record ``index`` (XTuner's tokenisation, no truncation)."""
        rec = self.records[index]
        out = self.encoder(rec['conversations'])
        n_images = 1 if rec.get('image') is not None else 0
        length = len(out['input_ids']) + n_images * (self.num_visual_tokens - 1)
        if length > self.max_length:
            raise BadInstructionRecord('too_long',
                                       f'{length} tokens (text + {self.num_visual_tokens} visual) '
                                       f'> max_length={self.max_length}')
        return out

    def image_path(self, rec: dict) -> str:
        path = osp.join(self.image_folder, rec['image'])
        if not osp.isfile(path):
            raise BadInstructionRecord('missing_image', f'image not found: {path}')
        return path

    def pixels(self, index: int) -> torch.Tensor:
        rec = self.records[index]
        if rec.get('image') is None:  # text-only: a blank image the LLM never sees, as XTuner does
            return torch.zeros(3, self.image_size, self.image_size)
        path = self.image_path(rec)
        from PIL import Image, ImageOps
        try:
            with Image.open(path) as im:
                rgb = as_rgb_uint8(ImageOps.exif_transpose(im))
        except (OSError, ValueError) as err:
            raise BadInstructionRecord('unreadable_image', f'cannot read {path}: {err}') from None
        return torch.from_numpy(to_model_input(rgb, self.image_size)[0])

    def load(self, index: int) -> dict:
        try:
            out = self.text(index)
            out['pixel_values'] = self.pixels(index)
        except BadInstructionRecord as err:
            raise self._locate(err, self.indices[index], self.records[index]) from None
        return out

    def __getitem__(self, index: int) -> dict:
        for k in range(self.max_refetch + 1):
            i = (index + k) % len(self.records)
            try:
                return self.load(i)
            except BadInstructionRecord as err:
                self._bad(err)
        raise RuntimeError(f'{self.data_path}: {self.max_refetch + 1} bad records in a row from record '
                           f'{self.indices[index]} ({self.skips.summary()})')
