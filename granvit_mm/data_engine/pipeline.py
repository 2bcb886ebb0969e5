"""The engine: stages built from a config, run over shards by a plain loop or a process pool.

``DataEngine`` holds the stage configs and builds the stages lazily (in the process that runs them: a pool
worker or a Ray actor loads its own models). A shard's items go through the stages ``batch_size`` at a time,
so at most one batch of decoded pixels is alive per process, then to the writer.
"""
import hashlib
import json
import multiprocessing as mp
import os.path as osp
import time
from typing import Callable, Iterable, List, Optional

from granvit_mm.registry import DATA_ENGINE_STAGES

from .item import count, make_item, reject
from .shards import read_entries
from .stage import build_component
from .writer import write_shard

RAY_KEY = 'ray'  # per-stage Ray Data options inside a stage's config (popped before the stage is built)


def stage_configs(cfg: dict) -> List[dict]:
    stages = [dict(s) for s in cfg['stages']]
    if not stages or stages[0].get('type') not in ('DecodeImages', 'granvit.DecodeImages'):
        raise ValueError("the first stage must be DecodeImages (the ingest stage): got "
                         f"{stages[0].get('type') if stages else None!r}")
    return stages


def build_stage(stage_cfg: dict):
    stage_cfg = dict(stage_cfg)
    stage_cfg.pop(RAY_KEY, None)
    return build_component(stage_cfg)


def stage_names(cfg: dict) -> List[str]:
    """Each stage's ``name`` (its reject prefix), from the class, without building it."""
    names = []
    for s in stage_configs(cfg):
        typ = s['type'].split('.')[-1] if isinstance(s['type'], str) else s['type']
        cls = DATA_ENGINE_STAGES.get(typ) if isinstance(typ, str) else typ
        if cls is None:
            raise KeyError(f'{s["type"]!r} is not a registered data-engine stage; registered: '
                           f'{sorted(DATA_ENGINE_STAGES.module_dict)}')
        names.append(cls.name)
    return names


def run_tag(cfg: dict) -> str:
    """A short id of the engine config: written into every record's provenance and the manifest."""
    text = json.dumps(dict(stages=cfg['stages'], batch_size=cfg.get('batch_size')), sort_keys=True,
                      default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def entries_to_items(entries: List[dict], first_key: int) -> List[dict]:
    items = []
    for n, e in enumerate(entries):
        if 'bad' in e:
            it = make_item(first_key + n, '', '', '')
            reject(it, 'input', e['bad'], e.get('detail', ''))
        else:
            it = make_item(first_key + n, e['path'], e['image'], e['source'], e.get('regions'),
                           e.get('width'),
                           e.get('height'))
            it['caption'] = e.get('caption')  # a Gran input's caption stays unless a captioner redoes it
            count(it, 'input:regions_dropped', e.get('dropped', 0))
            if it['given_boxes']:
                it['provenance']['boxes'] = 'given'
        items.append(it)
    return items


class DataEngine:
    """The configured stages. ``cfg``: the engine config as a plain dict (``stages``, ``batch_size``)."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.stage_cfgs = stage_configs(cfg)
        self.batch_size = int(cfg.get('batch_size', 8))
        self.tag = run_tag(cfg)
        self._stages = None

    @property
    def stages(self):
        if self._stages is None:
            self._stages = [build_stage(c) for c in self.stage_cfgs]
        return self._stages

    def run_items(self, items: List[dict]) -> List[dict]:
        for i in range(0, len(items), self.batch_size):
            batch = items[i:i + self.batch_size]
            for stage in self.stages:
                stage(batch)
            for it in batch:
                it['pixels'] = None
        return items

    def run_shard(self, work_dir: str, index: int, first_key: int) -> dict:
        items = entries_to_items(read_entries(work_dir, index), first_key)
        return write_shard(work_dir, index, self.run_items(items), self.tag)


# ---- local runner: a loop, or a process pool that splits the shards ------------------------------------
_WORKER: Optional[DataEngine] = None


def _init_worker(cfg: dict) -> None:
    global _WORKER
    import os
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    _WORKER = DataEngine(cfg)


def _run_in_worker(job) -> dict:
    return _WORKER.run_shard(*job)


def run_local(cfg: dict, work_dir: str, jobs: Iterable[tuple], workers: int = 1,
              log: Callable[[str], None] = print) -> List[dict]:
    """Run ``jobs`` (``(work_dir, shard, first_key)``) in this process (``workers`` <= 1) or in a pool of
    ``workers`` spawned processes, each building its stages once."""
    jobs = list(jobs)
    done, t0 = [], time.time()

    def report(stats):
        done.append(stats)
        log(f'[data_engine] {stats["shard"]}: {stats["written"]}/{stats["inputs"]} written '
            f'({len(done)}/{len(jobs)} shards, {time.time() - t0:.1f} s)')

    if workers <= 1:
        engine = DataEngine(cfg)
        for job in jobs:
            report(engine.run_shard(*job))
        return done
    with mp.get_context('spawn').Pool(workers, initializer=_init_worker, initargs=(cfg, )) as pool:
        for stats in pool.imap_unordered(_run_in_worker, jobs):
            report(stats)
    return done


def shard_jobs(work_dir: str, plan: dict, pending: Iterable[int]) -> List[tuple]:
    starts, acc = [], 0
    for n in plan['shard_sizes']:
        starts.append(acc)
        acc += n
    return [(osp.abspath(work_dir), i, starts[i]) for i in pending]
