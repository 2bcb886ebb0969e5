"""One call for the tool and the tests: plan the shards, run the pending ones (loop, pool or Ray), write the
manifest. Rerunning the same call after a crash or a kill finishes what is missing and rewrites the
manifest."""
import glob
import json
import os.path as osp
import time
from typing import Callable, Optional

from .inputs import default_img_root, input_kind, iter_entries
from .pipeline import run_local, run_tag, shard_jobs, stage_configs, stage_names
from .shards import OUT, STATS, atomic_write, pending_shards, plan_shards
from .writer import merge_stats


def run_engine(cfg: dict, inp: str, work_dir: str, img_root: Optional[str] = None, source: str = 'images',
               workers: int = 1, launcher: str = 'local', ray_address: Optional[str] = None,
               ray_num_cpus: Optional[int] = None, log: Callable[[str], None] = print) -> dict:
    """Run the engine ``cfg`` (a plain dict: ``stages``, ``batch_size``, ``shard_size``) on ``inp`` and
    return the manifest (also written to ``<work_dir>/manifest.json``)."""
    t0 = time.time()
    stage_configs(cfg)
    names = stage_names(cfg)
    img_root = osp.abspath(img_root or default_img_root(inp))
    meta = dict(input=osp.abspath(inp), kind=input_kind(inp), img_root=img_root, source=source,
                shard_size=int(cfg.get('shard_size', 1000)))
    plan = plan_shards(iter_entries(inp, img_root, source), work_dir, meta['shard_size'], meta)
    pending = pending_shards(work_dir, plan)
    log(f'[data_engine] {plan["num_inputs"]} inputs in {len(plan["shard_sizes"])} shards, '
        f'{len(pending)} to do ({launcher}, workers={workers})')
    jobs = shard_jobs(work_dir, plan, pending)
    tag = run_tag(cfg)
    if launcher == 'ray':
        from .ray_runner import run_ray
        run_ray(cfg, jobs, {i: plan['shard_sizes'][i] for i in pending}, tag, ray_address, ray_num_cpus, log)
    elif launcher == 'local':
        run_local(cfg, work_dir, jobs, workers, log)
    else:
        raise ValueError(f"launcher must be 'local' or 'ray', got {launcher!r}")
    return write_manifest(cfg, work_dir, plan, names, tag, time.time() - t0)


def write_manifest(cfg: dict, work_dir: str, plan: dict, names, tag: str, seconds: float) -> dict:
    left = pending_shards(work_dir, plan)
    if left:
        raise RuntimeError(f'{len(left)} shards unfinished ({left[:5]}...): rerun the same command')
    stats = []
    for path in sorted(glob.glob(osp.join(work_dir, STATS, 'part-*.json'))):
        with open(path, encoding='utf-8') as f:
            stats.append(json.load(f))
    totals = merge_stats(stats, names)
    assert totals['inputs'] == plan['num_inputs'] == totals['written'] + totals['rejected_total'], totals
    manifest = dict(
        run=tag, input=plan['meta'], shards=len(stats),
        outputs=osp.join(OUT, 'part-*.jsonl'),
        reader=dict(ann_file=osp.join(osp.abspath(work_dir), OUT, 'part-*.jsonl'),
                    data_prefix=dict(img_path=plan['meta']['img_root'])),
        stage_configs=[dict(c) for c in stage_configs(cfg)], batch_size=cfg.get('batch_size'),
        last_call_seconds=round(seconds, 2), **totals)
    atomic_write(osp.join(work_dir, 'manifest.json'), json.dumps(manifest, indent=1, default=str))
    return manifest
