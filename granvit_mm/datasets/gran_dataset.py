"""GranDataset: Gran JSONL shards read lazily through memory-mapped byte-offset indexes.

mmengine's BaseDataset parses every annotation up front and keeps them (serialised) in each process. At
29.5M images that is tens of GB, so this dataset keeps only the offset indexes (8 bytes a record, mapped from
disk and shared through the page cache) and parses a record when it is asked for.
"""
import copy
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset

from granvit_mm.core.gran_record import BadRecordError, ValidationRules, parse_line, validate_record
from granvit_mm.registry import DATASETS

from .jsonl_index import MultiShardIndex, resolve_shards
from .skip_counter import SkipCounter


@DATASETS.register_module()
class GranDataset(BaseDataset):
    """One sample per image of Gran JSONL shards.

    Args:
        ann_file: a JSONL path, a glob (``'annotations/train-*.jsonl'``) or a list of them; relative paths
            are under ``data_root``.
        data_root: root of ``ann_file`` and of ``data_prefix['img_path']``.
        data_prefix: ``dict(img_path='images/')``: the folder the records' ``image`` paths are relative to.
        pipeline: transforms; ``granvit.LoadGranImage`` ... ``granvit.PackGranInputs``.
        on_bad_record: ``'skip'`` counts and logs a bad record (or image) and draws another index, seeded by
            (``resample_seed``, index, attempt) so that every worker agrees; ``'raise'`` raises the
            BadRecordError (it names shard, line and field). Default: skip for training, raise in test_mode.
        rules: ``ValidationRules`` fields, e.g. ``dict(clip_tolerance=2, bad_region='drop')``.
        index_cache_dir: where offset indexes go when a shard's folder is read-only
            (default ``~/.cache/granvit_mm/jsonl_index``); when given, indexes always go there.
        skip_log: ``SkipCounter`` options (``verbose_first``, ``summary_every``).
        indices, test_mode, lazy_init, max_refetch, metainfo: as in BaseDataset. ``filter_cfg`` is not
            supported (it would parse every record): filter offline with
            tools/dataset_converters/filter_gran.py.
    """

    METAINFO = dict(dataset_name='Gran')

    def __init__(self,
                 ann_file: Union[str, Sequence[str]],
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 on_bad_record: Optional[str] = None,
                 rules: Optional[dict] = None,
                 index_cache_dir: Optional[str] = None,
                 resample_seed: int = 0,
                 skip_log: Optional[dict] = None,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1000,
                 metainfo: Optional[dict] = None,
                 filter_cfg: Optional[dict] = None) -> None:
        if filter_cfg is not None:
            raise ValueError('GranDataset does not support filter_cfg (it would parse all records); '
                             'filter offline with tools/dataset_converters/filter_gran.py')
        on_bad_record = on_bad_record or ('raise' if test_mode else 'skip')
        if on_bad_record not in ('skip', 'raise'):
            raise ValueError(f"on_bad_record must be 'skip' or 'raise', got {on_bad_record!r}")
        self.ann_files = [ann_file] if isinstance(ann_file, str) else list(ann_file)
        self.on_bad_record = on_bad_record
        self.rules = ValidationRules(**(rules or {}))
        self.index_cache_dir = index_cache_dir
        self.resample_seed = resample_seed
        self.skips = SkipCounter(**(skip_log or {}))
        self._index: Optional[MultiShardIndex] = None
        self._positions: Optional[np.ndarray] = None
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(data_prefix),
            indices=indices,
            serialize_data=False,
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch)
        self.ann_file = ann_file

    # ---- initialisation -------------------------------------------------------------------------------
    def full_init(self) -> None:
        """Build (or reuse) one offset index per shard and map them; no record is parsed."""
        if self._fully_initialized:
            return
        self._index = MultiShardIndex(resolve_shards(self.ann_files, self.data_root), self.index_cache_dir)
        if self._indices is not None:
            self._positions = self._subset_positions(self._indices, np.arange(len(self._index)))
        self._fully_initialized = True

    @property
    def shards(self) -> List[str]:
        self.full_init()
        return [s.shard for s in self._index.shards]

    # ---- length and subsets ---------------------------------------------------------------------------
    def __len__(self) -> int:
        self.full_init()
        return len(self._positions) if self._positions is not None else len(self._index)

    @staticmethod
    def _subset_positions(indices: Union[int, Sequence[int]], base: np.ndarray) -> np.ndarray:
        if isinstance(indices, (int, np.integer)):
            return base[:indices] if indices >= 0 else base[indices:]
        return base[np.asarray(list(indices), dtype=np.int64)]

    def _record_of(self, idx: int) -> int:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f'index {idx} out of range for a dataset of {n} records')
        idx = idx % n
        return int(self._positions[idx]) if self._positions is not None else idx

    def get_subset_(self, indices: Union[int, Sequence[int]]) -> None:
        self.full_init()
        base = self._positions if self._positions is not None else np.arange(len(self._index))
        self._positions = self._subset_positions(indices, base)

    def get_subset(self, indices: Union[int, Sequence[int]]) -> 'GranDataset':
        self.full_init()
        sub = copy.copy(self)
        sub.skips = SkipCounter(self.skips.verbose_first, self.skips.summary_every, self.skips.name)
        sub.get_subset_(indices)
        return sub

    # ---- records --------------------------------------------------------------------------------------
    def read_record(self, idx: int) -> dict:
        """Raw record ``idx`` as stored (for tools); raises BadRecordError on malformed JSON."""
        raw, shard, line = self._index.read(self._record_of(idx))
        try:
            return parse_line(raw)
        except BadRecordError as err:
            raise err.locate(shard, line) from None

    def get_data_info(self, idx: int, epoch: int = 0) -> dict:
        """Parse and validate record ``idx`` into the dict the pipeline starts from.

        Keys: ``img_path, width, height, source, caption, gt_bboxes`` (float32 (N, 4) xyxy, original
        pixels), ``region_captions, region_kinds, sample_idx, epoch, shard, line``.
        """
        self.full_init()
        raw, shard, line = self._index.read(self._record_of(idx))
        try:
            if len(raw) > self.rules.max_line_bytes:
                raise BadRecordError(
                    'line_too_long', f'line has {len(raw)} bytes (limit '
                    f'{self.rules.max_line_bytes}); are newlines missing?')
            rec, dropped = validate_record(parse_line(raw), self.rules)
        except BadRecordError as err:
            raise err.locate(shard, line) from None
        for err in dropped:
            self.skips.drop_region(err.locate(shard, line))
        prefix = self.data_prefix.get('img_path', '')
        return dict(
            img_path=_join(prefix, rec['image']),
            width=rec['width'],
            height=rec['height'],
            source=rec['source'],
            caption=rec['caption'],
            gt_bboxes=rec['bboxes'],
            region_captions=rec['region_captions'],
            region_kinds=rec['region_kinds'],
            sample_idx=idx % len(self),
            epoch=epoch,
            shard=shard,
            line=line)

    def load_data_list(self) -> List[dict]:
        """Every record parsed (O(N) memory): for small sets and debugging only, never used by training."""
        self.full_init()
        return [self.get_data_info(i) for i in range(len(self))]

    # ---- bad records ----------------------------------------------------------------------------------
    def prepare_data(self, idx: int, epoch: int = 0) -> Optional[dict]:
        """Pipeline output, or None for a skipped bad record (``on_bad_record='skip'``)."""
        try:
            return self.pipeline(self.get_data_info(idx, epoch))
        except BadRecordError as err:
            if self.on_bad_record == 'raise':
                raise
            self.skips.skip(err)
            return None

    def _resample(self, idx: int, attempt: int, epoch: int = 0) -> int:
        """Deterministic replacement index: the same in every worker and rank."""
        rng = np.random.default_rng([self.resample_seed, epoch, idx % len(self), attempt])
        return int(rng.integers(len(self)))

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> dict:
        """Sample ``idx``, or ``(epoch, idx)`` as ``EpochTaggedSampler`` yields: task draws are seeded by
        (seed, epoch, idx), so they change every epoch and agree across workers and ranks."""
        self.full_init()
        epoch, idx = (int(idx[0]), int(idx[1])) if isinstance(idx, (tuple, list)) else (0, idx)
        cur = idx
        for attempt in range(self.max_refetch + 1):
            data = self.prepare_data(cur, epoch)
            if data is not None:
                return data
            cur = self._resample(idx, attempt, epoch)
        raise RuntimeError(
            f'GranDataset: no valid sample after {self.max_refetch} refetches from index {idx}; '
            f'{self.skips.summary()}')


def _join(prefix: str, path: str) -> str:
    """Join like os.path.join but keep URLs (``s3://...``) and absolute image paths as they are."""
    if not prefix or path.startswith('/') or '://' in path:
        return path
    return prefix.rstrip('/') + '/' + path
