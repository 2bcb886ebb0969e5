"""GranLLaVADataset: Gran JSONL shards as XTuner LLaVA training data, read one record at a time.

XTuner's ``LLaVADataset`` loads the whole JSON and tokenises it up front (32 processes; or it loads an offline
pre-tokenised arrow folder). At Gran-29M's 29.5M images that costs hours and tens of GB before the first step
and fixes each image's task draw for good (docs/data.md, "Stage-2 data", has the measurements). This dataset
is ``GranDataset`` (memory-mapped shard indexes, bad-record skip/raise, ``(epoch, index)`` draws) with a
stage-2 pipeline: load the image (EXIF, size checks), draw the tasks (global caption + Caption2Bbox, the
stage-1 sampler), write them as an XTuner LLaVA conversation and tokenise it with XTuner's own functions.
Items are what XTuner's training loop expects: ``dict(input_ids, labels, pixel_values)`` for
``xtuner.dataset.collate_fns.default_collate_fn``.
"""
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch

from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.gran_record import BadRecordError
from granvit_mm.core.image_input import to_model_input
from granvit_mm.datasets.gran_dataset import GranDataset
from granvit_mm.datasets.jsonl_index import HEADER
from granvit_mm.datasets.region_tasks import build_tasks
from granvit_mm.datasets.transforms import LoadGranImage, SampleRegionTasks

from .gran_conversation import LLaVAConversationEncoder, llava_conversation

__all__ = ['GranLLaVADataset', 'GranToLLaVA', 'STAGE2_CAPTION_TURN', 'STAGE2_TASKS', 'config_box_style']

# The paper's stage 2: global caption (when the record has one) + Caption2Bbox; up to 4 regions an image.
STAGE2_TASKS = dict(global_caption=1, caption2bbox=4)
# Ours: the caption turn after the Caption2Bbox turns. Before them it names every object with a coarse place
# and the answers lean on it (10k GranSynth images: 14.0 Acc@0.5 against 32.7 without it;
# docs/toy_grounding.md).
STAGE2_CAPTION_TURN = 'last'


class GranToLLaVA:
    """The pipeline's last step: drawn tasks -> tokenised conversation, image -> ``pixel_values``.

    Boxes are normalised relative to the padded square (``SquareGeometry``), questions and answers come from
    ``granvit_mm.core.prompts`` via ``build_tasks``, pixels from ``granvit_mm.core.image_input`` (pad right/
    bottom, resize, SigLIP normalisation): the same definitions as stage 1.
    """

    def __init__(self, encoder: LLaVAConversationEncoder, image_size: int, box_style: str = 'decimal3',
                 return_meta: bool = False) -> None:
        self.encoder = encoder
        self.image_size = int(image_size)
        self.box_style = box_style
        self.return_meta = return_meta

    def tasks(self, results: dict) -> List[dict]:
        geom = SquareGeometry(int(results['height']), int(results['width']), self.image_size)
        return build_tasks(results['task_specs'], geom.to_normalized(results['gt_bboxes']),
                           results['region_captions'], results.get('caption'), self.box_style)

    def text(self, results: dict) -> Dict[str, list]:
        """``input_ids`` / ``labels`` (and with ``return_meta`` the tasks and where they came from)."""
        tasks = self.tasks(results)
        out = self.encoder(llava_conversation(tasks))
        if not self.encoder.has_loss(out['labels']):
            raise BadRecordError(
                'no_loss_tokens', f'the conversation leaves no answer token within max_length='
                f'{self.encoder.max_length}; raise max_length', results.get('shard', '?'),
                results.get('line', -1))
        if self.return_meta:
            out.update(tasks=tasks, img_path=results.get('img_path'), shard=results.get('shard'),
                       line=results.get('line'))
        return out

    def __call__(self, results: dict) -> dict:
        out = self.text(results)
        pixels, _ = to_model_input(results['img'], self.image_size)
        out['pixel_values'] = torch.from_numpy(pixels)
        return out

    def __repr__(self) -> str:
        return f'{type(self).__name__}(image_size={self.image_size}, box_style={self.box_style!r})'


class GranLLaVADataset(GranDataset):
    """Gran JSONL -> XTuner LLaVA items, lazily (in place of ``xtuner.dataset.LLaVADataset`` in a config).

    Args:
        ann_file, data_root, data_prefix: as ``GranDataset`` (a path, a glob or a list of JSONL shards).
        tokenizer: a tokenizer or its XTuner config dict.
        image_size: the square input side (the vision tower's ``image_size``; 512 in the paper).
        template_map_fn: XTuner's ``dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.x)``;
            default ``qwen_chat`` (``granvit_mm.core.chat_format.QWEN_CHAT``).
        max_length: XTuner's ``max_length`` of ``input_ids`` (truncation; conversations left with no answer
            token count as bad records ``no_loss_tokens``, which XTuner would drop).
        tasks: ``{task: amount}`` as ``SampleRegionTasks``; default ``STAGE2_TASKS``.
        box_style: the box text style (``granvit_mm.core.box_text``).
        caption_turn: the global-caption turn ``'last'`` (default, ``STAGE2_CAPTION_TURN``) or ``'first'``.
        task_seed, task_mode, unique_grounding: ``SampleRegionTasks``'s ``seed``, ``mode``,
            ``unique_grounding`` (Caption2Bbox only on captions unique in the image).
        load_cfg: ``LoadGranImage`` options (``backend_args``, ``on_size_mismatch``, ...).
        return_meta: items also carry ``tasks``, ``img_path``, ``shard``, ``line`` (evaluation, tools).
        **kwargs: ``GranDataset`` options: ``on_bad_record`` ('skip' with a deterministic redraw, default in
            training; 'raise' in ``test_mode``), ``rules``, ``index_cache_dir``, ``resample_seed``,
            ``skip_log``, ``indices``, ``test_mode``, ``lazy_init``, ``max_refetch``.

    Index it with a plain index (epoch 0) or an ``(epoch, index)`` pair (``granvit_mm.datasets
    .EpochTaggedSampler``), which draws new tasks every epoch; XTuner's ``LengthGroupedSampler`` works too
    (plain indices, so every epoch repeats epoch 0's draw) through ``modality_length``.
    """

    def __init__(self,
                 ann_file: Union[str, List[str]],
                 tokenizer,
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 image_size: int = 512,
                 template_map_fn: Optional[Union[dict, Callable]] = None,
                 max_length: int = 2048,
                 tasks: Optional[Dict[str, float]] = None,
                 box_style: str = 'decimal3',
                 caption_turn: str = STAGE2_CAPTION_TURN,
                 task_seed: int = 0,
                 task_mode: str = 'random',
                 unique_grounding: bool = True,
                 load_cfg: Optional[dict] = None,
                 return_meta: bool = False,
                 **kwargs) -> None:
        if 'pipeline' in kwargs:
            raise ValueError('GranLLaVADataset builds its own pipeline; set its options instead')
        self.sample_tasks = SampleRegionTasks(STAGE2_TASKS if tasks is None else tasks, seed=task_seed,
                                              mode=task_mode, max_distill_regions=0,
                                              unique_grounding=unique_grounding, caption_turn=caption_turn)
        self.to_llava = GranToLLaVA(LLaVAConversationEncoder(tokenizer, template_map_fn, max_length),
                                    image_size, box_style, return_meta)
        pipeline = [LoadGranImage(**(load_cfg or {})), self.sample_tasks, self.to_llava]
        super().__init__(ann_file, data_root=data_root, data_prefix=data_prefix, pipeline=pipeline, **kwargs)

    @property
    def tokenizer(self):
        return self.to_llava.encoder.tokenizer

    def text_item(self, idx: int, epoch: int = 0) -> Optional[dict]:
        """Record ``idx``'s tokenised conversation without reading its image (tools, benchmarks); None when
        the record yields no task. Bad records raise BadRecordError."""
        self.full_init()
        results = self.sample_tasks(self.get_data_info(idx, epoch))
        return None if results is None else self.to_llava.text(results)

    # ---- XTuner's LengthGroupedSampler ----------------------------------------------------------------
    def record_bytes(self) -> np.ndarray:
        """Byte length of every record's JSONL line, read from the offset indexes (no record is parsed)."""
        self.full_init()
        sizes = []
        for shard in self._index.shards:
            arr = np.load(shard.index_file, mmap_mode='r')  # layout: granvit_mm/datasets/jsonl_index.py
            sizes.append(np.diff(arr[HEADER:HEADER + len(shard) + 1]))
        sizes = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        return sizes[self._positions] if self._positions is not None else sizes

    @property
    def modality_length(self) -> List[int]:
        """Per-record length hint for ``LengthGroupedSampler(length_property='modality_length')``.

        XTuner's ``LLaVADataset`` gives exact token counts (negative for text-only samples), which needs
        every record tokenised; here it is the line's byte length / 4, a size order at no cost (every Gran
        record has an image, so all are positive). The sampler needs a Python list: 8 bytes a record.
        """
        return np.maximum(self.record_bytes() // 4, 1).tolist()

    @property
    def length(self) -> List[int]:
        """``LengthGroupedSampler``'s default ``length_property``: the same hint."""
        return self.modality_length


def config_box_style(cfg) -> str:
    """The box text style a stage-2 config trains with (its dataset's ``box_style``; else a top-level
    ``box_style``; else the default): what evaluation, inference and the export must parse answers in."""
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    return dataset.get('box_style') or cfg.get('box_style') or 'decimal3'
