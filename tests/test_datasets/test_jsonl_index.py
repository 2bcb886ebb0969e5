import os
import pickle

import numpy as np
import pytest

from granvit_mm.datasets.jsonl_index import (INDEX_SUFFIX, MultiShardIndex, ShardIndex, build_index,
                                             index_path_for, resolve_shards, scan_line_offsets)


def _write(path, text):
    with open(path, 'wb') as f:
        f.write(text.encode())
    return str(path)


def test_offsets_skip_blank_lines_and_keep_line_numbers(tmp_path):
    p = _write(tmp_path / 'a.jsonl', '{"a":1}\n\n{"b":2}\r\n  \n{"c":3}')  # CRLF, blank lines, no final \n
    idx = ShardIndex(p)
    assert len(idx) == 3
    assert [idx.read(i).strip() for i in range(3)] == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    assert [idx.line_number(i) for i in range(3)] == [1, 3, 5]


def test_chunked_scan_matches(tmp_path):
    lines = [f'{{"i":{i}}}' for i in range(1000)]
    p = _write(tmp_path / 'b.jsonl', '\n'.join(lines) + '\n')
    offsets, blank = scan_line_offsets(p, chunk=37)  # chunk boundaries inside lines
    assert offsets.size == 1001 and blank.size == 0
    assert offsets[-1] == os.path.getsize(p)


def test_empty_file(tmp_path):
    p = _write(tmp_path / 'e.jsonl', '')
    assert len(ShardIndex(p)) == 0


def test_index_cached_reused_and_invalidated(tmp_path):
    p = _write(tmp_path / 'c.jsonl', '{"a":1}\n{"a":2}\n')
    path = build_index(p)
    assert path == p + INDEX_SUFFIX and os.path.isfile(path)
    assert os.stat(path).st_mode & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044  # readable by others
    mtime = os.stat(path).st_mtime_ns
    assert build_index(p) == path and os.stat(path).st_mtime_ns == mtime  # reused, not rebuilt
    _write(p, '{"a":1}\n{"a":2}\n{"a":3}\n')
    assert len(ShardIndex(p)) == 3  # size/mtime changed -> rebuilt


def test_corrupt_index_is_rebuilt(tmp_path):
    p = _write(tmp_path / 'd.jsonl', '{"a":1}\n')
    with open(p + INDEX_SUFFIX, 'wb') as f:
        f.write(b'garbage')
    assert len(ShardIndex(p)) == 1


def test_read_only_folder_falls_back_to_cache_dir(tmp_path, monkeypatch):
    import granvit_mm.datasets.jsonl_index as ji
    ro = tmp_path / 'ro'
    ro.mkdir()
    p = _write(ro / 'x.jsonl', '{"a":1}\n')
    real_access = os.access
    monkeypatch.setattr(ji.os, 'access', lambda path, mode: False
                        if str(path) == str(ro) else real_access(path, mode))
    monkeypatch.setattr(ji, 'DEFAULT_CACHE_DIR', str(tmp_path / 'cache'))
    idx = ShardIndex(p)
    assert idx.index_file.startswith(str(tmp_path / 'cache')) and not os.path.exists(p + INDEX_SUFFIX)
    assert idx.read(0) == b'{"a":1}\n'


def test_explicit_cache_dir(tmp_path):
    p = _write(tmp_path / 'y.jsonl', '{"a":1}\n')
    idx = ShardIndex(p, cache_dir=str(tmp_path / 'cache'))
    assert idx.index_file == index_path_for(p, str(tmp_path / 'cache'))
    assert not os.path.exists(p + INDEX_SUFFIX)


def test_multi_shard_and_pickle_does_not_copy_index(tmp_path):
    a = _write(tmp_path / 'p-0.jsonl', '{"i":0}\n{"i":1}\n')
    b = _write(tmp_path / 'p-1.jsonl', '{"i":2}\n')
    shards = resolve_shards('p-*.jsonl', str(tmp_path))
    assert shards == [a, b]  # the .gidx.npy files never match
    m = MultiShardIndex(shards)
    assert len(m) == 3
    assert m.read(2) == (b'{"i":2}\n', b, 1)
    blob = pickle.dumps(m)
    assert len(blob) < 2000  # paths only, not the mapped arrays
    m2 = pickle.loads(blob)
    assert m2.read(1)[0] == b'{"i":1}\n'
    with pytest.raises(IndexError):
        m.read(3)


def test_resolve_shards_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        resolve_shards('nope-*.jsonl', str(tmp_path))
    with pytest.raises(FileNotFoundError):
        resolve_shards(str(tmp_path / 'missing.jsonl'))


def test_index_is_int64_npy_mmap(tmp_path):
    p = _write(tmp_path / 'z.jsonl', '{"a":1}\n')
    arr = np.load(build_index(p), mmap_mode='r')
    assert isinstance(arr, np.memmap) and arr.dtype == np.int64
