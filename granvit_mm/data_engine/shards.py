"""Shards: the unit of work, planned once, each finished exactly once.

The input stream is cut into shards of ``shard_size`` entries, written to ``<work_dir>/plan/`` (one small
JSONL of entries per shard; ``plan.json`` last, so a plan killed midway is simply redone). A worker reads one
shard's entries, never the whole input. A shard is finished when ``stats/part-XXXXX.json`` exists: it is
written after ``gran/part-XXXXX.jsonl``, both atomically (temp file, fsync, rename), so a run killed at any
moment and rerun with the same command redoes only unfinished shards, and a redone shard replaces, never
appends.

Duplicate paths are refused within a shard (``duplicate_input``); across shards they are not detected (that
would need every path in memory): de-duplicate a list first (``sort -u``) when it may repeat itself.
"""
import json
import os
import os.path as osp
from typing import Iterable, Iterator, List, Optional

from .inputs import dump_entry

PLAN, OUT, STATS = 'plan', 'gran', 'stats'


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(osp.dirname(osp.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def shard_name(i: int) -> str:
    return f'part-{i:05d}'


def entries_path(work_dir: str, i: int) -> str:
    return osp.join(work_dir, PLAN, shard_name(i) + '.jsonl')


def output_path(work_dir: str, i: int) -> str:
    return osp.join(work_dir, OUT, shard_name(i) + '.jsonl')


def stats_path(work_dir: str, i: int) -> str:
    return osp.join(work_dir, STATS, shard_name(i) + '.json')


def is_done(work_dir: str, i: int) -> bool:
    return osp.isfile(stats_path(work_dir, i))


def _chunks(entries: Iterable[dict], size: int) -> Iterator[List[dict]]:
    chunk: List[dict] = []
    seen = set()
    for e in entries:
        if 'path' in e:
            if e['path'] in seen:
                e = dict(bad='duplicate_input', detail=f'{e["path"]} appears earlier in this shard')
            else:
                seen.add(e['path'])
        chunk.append(e)
        if len(chunk) == size:
            yield chunk
            chunk, seen = [], set()
    if chunk:
        yield chunk


def plan_shards(entries: Iterable[dict], work_dir: str, shard_size: int, meta: dict) -> dict:
    """Write the shards' entry files and ``plan.json`` (reused when a plan for the same ``meta`` exists)."""
    plan_file = osp.join(work_dir, PLAN, 'plan.json')
    if osp.isfile(plan_file):
        with open(plan_file, encoding='utf-8') as f:
            plan = json.load(f)
        if plan['meta'] != meta:
            raise ValueError(f'{work_dir} holds a run of another input or shard size '
                             f'({plan["meta"]} vs {meta}); use another --work-dir')
        return plan
    sizes = []
    for i, chunk in enumerate(_chunks(entries, shard_size)):
        atomic_write(entries_path(work_dir, i), ''.join(dump_entry(e) + '\n' for e in chunk))
        sizes.append(len(chunk))
    plan = dict(meta=meta, num_inputs=sum(sizes), shard_sizes=sizes)
    atomic_write(plan_file, json.dumps(plan))
    return plan


def read_entries(work_dir: str, i: int) -> List[dict]:
    with open(entries_path(work_dir, i), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def pending_shards(work_dir: str, plan: dict, only: Optional[Iterable[int]] = None) -> List[int]:
    ids = range(len(plan['shard_sizes'])) if only is None else only
    return [i for i in ids if not is_done(work_dir, i)]
