"""The cluster route: the same stages as Ray Data operators, no scheduler of our own.

Pending shards -> ``flat_map`` (a shard's entries become rows) -> one ``map_batches`` per stage, each an actor
pool (a stage builds its model once per actor; the config's per-stage ``ray=dict(concurrency=...,
num_gpus=..., num_cpus=..., batch_size=...)`` sizes it: GPU actors for the detector and captioner, CPU actors
for ingest, OCR and filters) -> the driver collects rows per shard and writes each shard as soon as all its
items have arrived, with the same writer as the local route (so resume, counts and the manifest are the same).
Rows carry a pickled item: Ray moves them through its object store; the last stage drops the pixels first.
"""
import pickle
from collections import defaultdict
from typing import Callable, Dict, List, Optional

import numpy as np

from .pipeline import RAY_KEY, build_stage, entries_to_items, stage_configs
from .shards import read_entries
from .writer import write_shard


def _shard_rows(row: dict) -> List[dict]:
    items = entries_to_items(read_entries(row['work_dir'], row['shard']), row['first_key'])
    return [dict(shard=row['shard'], blob=pickle.dumps(it)) for it in items]


class _StageActor:
    """One stage, built once per actor; a batch of rows in, the same rows out."""

    def __init__(self, stage_cfg: dict, strip_pixels: bool) -> None:
        self.stage = build_stage(stage_cfg)
        self.strip = strip_pixels

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch['blob']]
        self.stage(items)
        if self.strip:
            for it in items:
                it['pixels'] = None
        blobs = np.empty(len(items), dtype=object)
        blobs[:] = [pickle.dumps(it) for it in items]
        return dict(shard=np.asarray(batch['shard']), blob=blobs)


READER_CPUS = 0.25  # the flat_map task that turns a shard's entries into rows (light: reads one small file)


def _check_resources(stages: List[dict], have: dict) -> None:
    """Every actor pool and the reader must fit at once (a streaming pipeline): say so instead of waiting
    forever (Ray Data would hold the CPUs in actors and never schedule the reader)."""
    need = {'CPU': READER_CPUS, 'GPU': 0.0}
    for s in stages:
        opts = dict(s.get(RAY_KEY) or {})
        n = int(opts.get('concurrency', 1))
        need['CPU'] += n * float(opts.get('num_cpus', 1))
        need['GPU'] += n * float(opts.get('num_gpus', 0))
    short = {k: (v, have.get(k, 0)) for k, v in need.items() if v > have.get(k, 0) + 1e-9}
    if short:
        raise RuntimeError(f'the stages\' actor pools need {need} but the Ray cluster has '
                           f'{ {k: have.get(k, 0) for k in need} }: '
                           'lower `ray=dict(concurrency=..., num_cpus=..., num_gpus=...)` '
                           'in the stage configs or add nodes')


def run_ray(cfg: dict, jobs: List[tuple], sizes: Dict[int, int], tag: str, address: Optional[str] = None,
            num_cpus: Optional[int] = None, log: Callable[[str], None] = print) -> List[dict]:
    """Run ``jobs`` (``(work_dir, shard, first_key)``) on Ray (``address``: a cluster, e.g. 'auto'; None: a
    local Ray with ``num_cpus``). Returns the written shards' stats."""
    import ray
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if not jobs:
        return []
    stages = stage_configs(cfg)
    _check_resources(stages, ray.cluster_resources())
    ds = ray.data.from_items([dict(work_dir=w, shard=i, first_key=k) for w, i, k in jobs])
    ds = ds.flat_map(_shard_rows, num_cpus=READER_CPUS)
    default_bs = int(cfg.get('batch_size', 8))
    for n, stage_cfg in enumerate(stages):
        opts = dict(stage_cfg.get(RAY_KEY) or {})
        ds = ds.map_batches(
            _StageActor, fn_constructor_kwargs=dict(stage_cfg=stage_cfg, strip_pixels=n == len(stages) - 1),
            batch_size=int(opts.get('batch_size', default_bs)), batch_format='numpy',
            compute=ray.data.ActorPoolStrategy(size=int(opts.get('concurrency', 1))),
            num_cpus=opts.get('num_cpus', 1), num_gpus=opts.get('num_gpus', 0))
    work_dir = jobs[0][0]
    pending, written = defaultdict(list), []
    for batch in ds.iter_batches(batch_format='numpy', batch_size=None):
        for shard, blob in zip(batch['shard'], batch['blob']):
            shard = int(shard)
            pending[shard].append(pickle.loads(blob))
            if len(pending[shard]) == sizes[shard]:
                stats = write_shard(work_dir, shard, pending.pop(shard), tag)
                written.append(stats)
                log(f'[data_engine:ray] {stats["shard"]}: {stats["written"]}/{stats["inputs"]} written '
                    f'({len(written)}/{len(jobs)} shards)')
    if pending:
        raise RuntimeError(f'Ray returned incomplete shards {sorted(pending)}: rerun to finish them')
    return written
