"""Byte-offset indexes of JSONL shards, so that a 29.5M-line dataset costs each worker almost no memory.

Per shard, one int64 ``.npy`` file (built once, then memory-mapped, so all dataloader workers share the page
cache) laid out as::

    [MAGIC, VERSION, shard size, shard mtime_ns, n_records, n_blank, 0, 0,   # header, 8 slots
     start offsets of the n_records non-blank lines, end offset of the last one,
     for each blank line: the number of records before it]                   # to report true line numbers

The index sits beside the shard (``<shard>.gidx.npy``) or, where that folder is read-only, in a cache dir
keyed by the shard's absolute path. A change in the shard's size or mtime rebuilds it. Writes are atomic
(temp file + rename), so DDP ranks that build the same index at once do not corrupt it.
"""
import glob
import hashlib
import os
import os.path as osp
import tempfile
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

MAGIC = 0x4772616E4A534F4E  # 'GranJSON'
VERSION = 1
HEADER = 8
INDEX_SUFFIX = '.gidx.npy'
DEFAULT_CACHE_DIR = osp.join(osp.expanduser('~'), '.cache', 'granvit_mm', 'jsonl_index')
_CHUNK = 64 << 20


def resolve_shards(ann_file: Union[str, Sequence[str]], data_root: str = '') -> List[str]:
    """A path, a glob or a list of them (relative to ``data_root``) -> sorted, existing shard paths."""
    specs = [ann_file] if isinstance(ann_file, str) else list(ann_file)
    if not specs:
        raise ValueError('ann_file is empty')
    out: List[str] = []
    for spec in specs:
        path = spec if osp.isabs(spec) or not data_root else osp.join(data_root, spec)
        if glob.has_magic(path):
            hits = sorted(p for p in glob.glob(path) if not p.endswith(INDEX_SUFFIX))
            if not hits:
                raise FileNotFoundError(f'ann_file glob {path!r} matches no file')
            out.extend(hits)
        elif osp.isfile(path):
            out.append(path)
        else:
            raise FileNotFoundError(f'ann_file {path!r} does not exist')
    return out


def scan_line_offsets(path: str, chunk: int = _CHUNK) -> Tuple[np.ndarray, np.ndarray]:
    """Offsets of non-blank lines (+ the end) and, per blank line, how many records precede it.

    Vectorised over 64 MB chunks: about 1 s per GB.
    """
    ends = []  # offset just past each '\n'
    size = osp.getsize(path)
    if size == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.int64)
    with open(path, 'rb') as f:
        pos = 0
        while True:
            buf = f.read(chunk)
            if not buf:
                break
            nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
            ends.append(nl.astype(np.int64) + (pos + 1))
            pos += len(buf)
    line_end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    if size and (line_end.size == 0 or line_end[-1] != size):
        line_end = np.append(line_end, size)  # last line without '\n'
    starts = np.concatenate([[0], line_end[:-1]]).astype(np.int64)
    blank = _blank_lines(path, starts, line_end)
    keep = ~blank
    offsets = np.append(starts[keep], size if size else 0).astype(np.int64)
    blank_before = (np.cumsum(keep)[blank] if blank.any() else np.zeros(0, np.int64)).astype(np.int64)
    return offsets, blank_before


def _blank_lines(path: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines of only '\\n', '\\r\\n' or spaces; long lines are never blank, so only short ones are read."""
    length = ends - starts
    blank = length <= 1
    short = np.flatnonzero((length > 1) & (length <= 8))
    if short.size:
        with open(path, 'rb') as f:
            for i in short:
                f.seek(int(starts[i]))
                blank[i] = not f.read(int(length[i])).strip()
    return blank


def index_path_for(shard: str, cache_dir: Optional[str] = None) -> str:
    """Beside the shard if its folder is writable, else in ``cache_dir`` under a hash of the path."""
    beside = shard + INDEX_SUFFIX
    if cache_dir is None and os.access(osp.dirname(osp.abspath(shard)) or '.', os.W_OK):
        return beside
    key = hashlib.sha1(osp.abspath(shard).encode()).hexdigest()[:16]
    return osp.join(cache_dir or DEFAULT_CACHE_DIR, f'{key}_{osp.basename(shard)}{INDEX_SUFFIX}')


def _stat_key(shard: str) -> Tuple[int, int]:
    st = os.stat(shard)
    return int(st.st_size), int(st.st_mtime_ns)


def _is_fresh(arr: np.ndarray, shard: str) -> bool:
    size, mtime = _stat_key(shard)
    return (arr.ndim == 1 and arr.size >= HEADER and int(arr[0]) == MAGIC and int(arr[1]) == VERSION
            and int(arr[2]) == size and int(arr[3]) == mtime
            and arr.size == HEADER + int(arr[4]) + 1 + int(arr[5]))


def _write_atomic(path: str, arr: np.ndarray) -> None:
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path) or '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.save(f, arr)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; other users of a shared dataset read it too
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build_index(shard: str, cache_dir: Optional[str] = None) -> str:
    """Build (or reuse) the index file of ``shard``; returns its path."""
    path = index_path_for(shard, cache_dir)
    if osp.exists(path):
        try:
            if _is_fresh(np.load(path, mmap_mode='r'), shard):
                return path
        except (ValueError, OSError):
            pass  # unreadable or truncated: rebuild
    size, mtime = _stat_key(shard)
    offsets, blank_before = scan_line_offsets(shard)
    header = np.array([MAGIC, VERSION, size, mtime, offsets.size - 1, blank_before.size, 0, 0], np.int64)
    arr = np.concatenate([header, offsets, blank_before])
    if _stat_key(shard) != (size, mtime):
        raise RuntimeError(f'{shard} changed while it was being indexed')
    try:
        _write_atomic(path, arr)
    except OSError:
        if cache_dir is not None:
            raise
        path = index_path_for(shard, DEFAULT_CACHE_DIR)  # folder looked writable but is not (e.g. a mount)
        _write_atomic(path, arr)
    return path


class ShardIndex:
    """One shard: record i -> (byte offset, length, 1-based line number); reads records with ``pread``."""

    def __init__(self, shard: str, cache_dir: Optional[str] = None) -> None:
        self.shard = shard
        self.index_file = build_index(shard, cache_dir)
        self._arr: Optional[np.ndarray] = None
        self._fd: Optional[int] = None
        self._pid = -1
        self._open()
        self.num_records = int(self._arr[4])

    def _open(self) -> None:
        self._arr = np.load(self.index_file, mmap_mode='r')
        if not _is_fresh(self._arr, self.shard):
            raise RuntimeError(f'{self.shard} changed after its index was built; rebuild the dataset')
        n, nb = int(self._arr[4]), int(self._arr[5])
        self._offsets = self._arr[HEADER:HEADER + n + 1]
        self._blank_before = self._arr[HEADER + n + 1:HEADER + n + 1 + nb]

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a fork must not share the parent's descriptor
            self._fd = os.open(self.shard, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def __len__(self) -> int:
        return self.num_records

    def line_number(self, i: int) -> int:
        """1-based line of record ``i`` in the shard, counting blank lines."""
        return i + 1 + int(np.searchsorted(self._blank_before, i, side='right'))

    def read(self, i: int) -> bytes:
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        return os.pread(self._file(), end - start, start)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __getstate__(self):  # do not pickle the mmap's pages nor the descriptor; reopen in the worker
        return dict(shard=self.shard, index_file=self.index_file, num_records=self.num_records)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fd, self._pid = None, -1
        self._open()


class MultiShardIndex:
    """Global record index over several shards (cumulative counts; a binary search picks the shard)."""

    def __init__(self, shards: Sequence[str], cache_dir: Optional[str] = None) -> None:
        self.shards = [ShardIndex(s, cache_dir) for s in shards]
        self.cumsum = np.cumsum([0] + [len(s) for s in self.shards]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.cumsum[-1])

    def locate(self, idx: int) -> Tuple[ShardIndex, int]:
        if not 0 <= idx < len(self):
            raise IndexError(f'record {idx} out of range [0, {len(self)})')
        s = int(np.searchsorted(self.cumsum, idx, side='right')) - 1
        return self.shards[s], idx - int(self.cumsum[s])

    def read(self, idx: int) -> Tuple[bytes, str, int]:
        """Raw line bytes, shard path and 1-based line number of global record ``idx``."""
        shard, i = self.locate(idx)
        return shard.read(i), shard.shard, shard.line_number(i)

    def close(self) -> None:
        for s in self.shards:
            s.close()


def main(argv=None) -> None:
    """Build the indexes ahead of a multi-node run (else every rank builds them at start-up, at once):

        python -m granvit_mm.datasets.jsonl_index 'data/gran/annotations/*.jsonl' [--cache-dir DIR]
    """
    import argparse
    import time
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('ann_files', nargs='+', help='JSONL files or globs')
    parser.add_argument('--cache-dir', default=None)
    args = parser.parse_args(argv)
    total, t0 = 0, time.perf_counter()
    for shard in resolve_shards(args.ann_files):
        idx = ShardIndex(shard, args.cache_dir)
        total += len(idx)
        print(f'{shard}: {len(idx)} records -> {idx.index_file}')
    print(f'{total} records indexed in {time.perf_counter() - t0:.1f} s')


if __name__ == '__main__':
    main()
