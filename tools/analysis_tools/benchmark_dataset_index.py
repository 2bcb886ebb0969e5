"""Scale evidence for GranDataset: index build, open, random access and memory per worker.

Writes a synthetic Gran JSONL of ``--lines`` records (default 3M, about 6.2 regions each like Gran-29M's
183.55M / 29.51M), then measures:
- index build time (first open) and open time (index reused, memory-mapped);
- random-access records/s through ``GranDataset.get_data_info`` (read + JSON parse + validation);
- RSS of ``--workers`` forked reader processes (anonymous vs file-backed: the index pages are shared);
- what mmengine's default (parse everything, pickle-serialise in every rank's main process, shared with its
  workers by fork) would cost, from a sample;
and extrapolates to 29.5M lines. The temp dir is deleted unless ``--keep``.

    nice python tools/analysis_tools/benchmark_dataset_index.py --lines 3000000 --out bench.json
"""
import argparse
import json
import multiprocessing as mp
import os
import os.path as osp
import pickle
import shutil
import sys
import tempfile
import time

import numpy as np

GRAN_LINES = 29_510_000
GRAN_REGIONS = 183_550_000


def write_synthetic(path: str, lines: int, seed: int = 0, chunk: int = 100_000) -> int:
    """Fast writer: lines assembled from a pool of pre-formatted region strings; returns bytes written."""
    rng = np.random.default_rng(seed)
    words = ['a', 'red', 'small', 'dog', 'sitting', 'on', 'wooden', 'bench', 'near', 'the', 'window', 'sign']
    pool = []
    for _ in range(4096):
        x1, y1 = rng.integers(0, 500, 2)
        w, h = rng.integers(101, 400, 2)
        cap = ' '.join(rng.choice(words, size=int(rng.integers(3, 11))))
        kind = 'text' if rng.random() < 0.3 else 'object'
        pool.append(f'{{"bbox":[{x1}.0,{y1}.0,{x1 + w}.5,{y1 + h}.5],"caption":"{cap}","kind":"{kind}"}}')
    caption = ('A detailed paragraph describing the scene, the objects in it, their colours, their positions '
               'and what the people are doing, as a captioning model would write it.')
    n_written = 0
    with open(path, 'w', encoding='utf-8') as f:
        for start in range(0, lines, chunk):
            n = min(chunk, lines - start)
            counts = rng.integers(1, 12, size=n)  # mean 6, Gran-29M has 6.2 regions per image
            picks = rng.integers(0, len(pool), size=int(counts.sum()))
            out, p = [], 0
            for i in range(n):
                regs = ','.join(pool[j] for j in picks[p:p + counts[i]])
                p += counts[i]
                cap = 'null' if i % 5 == 0 else f'"{caption}"'
                out.append(f'{{"image":"part{(start + i) // 10000:05d}/{start + i:09d}.jpg","width":900,'
                           f'"height":900,"source":"bench","caption":{cap},"regions":[{regs}]}}')
            f.write('\n'.join(out) + '\n')
            n_written += n
    return osp.getsize(path)


def _mem() -> dict:
    """Memory of this process (MB) from /proc: RSS (anonymous vs file-backed) and, from smaps_rollup, the
    private pages (USS: what this process alone costs; a forked worker shares the rest with its parent)."""
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key = line.split(':')[0]
            if key in ('VmRSS', 'RssAnon', 'RssFile'):
                out[key] = int(line.split()[1]) / 1024
    try:
        with open('/proc/self/smaps_rollup') as f:
            vals = {ln.split(':')[0]: int(ln.split()[1]) / 1024 for ln in f if ln.rstrip().endswith('kB')}
        out['Pss'] = vals.get('Pss', 0.0)
        out['USS'] = vals.get('Private_Clean', 0.0) + vals.get('Private_Dirty', 0.0)
    except OSError:
        pass
    return out


def _reader(args):
    ds, seconds, seed, q = args
    start = _mem()
    rng = np.random.default_rng(seed)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in rng.integers(0, len(ds), size=256):
            ds.get_data_info(int(i))
        n += 256
    end = _mem()
    q.put(
        dict(
            pid=os.getpid(),
            records_per_s=n / (time.perf_counter() - t0),
            uss_growth_mb=end['USS'] - start['USS'],
            **end))


def run(args) -> dict:
    from granvit_mm.datasets import GranDataset
    tmp = tempfile.mkdtemp(prefix='granvit_bench_', dir=args.tmp_dir)
    res = dict(lines=args.lines)
    try:
        path = osp.join(tmp, 'bench.jsonl')
        t = time.perf_counter()
        res['jsonl_bytes'] = write_synthetic(path, args.lines)
        res['write_s'] = time.perf_counter() - t
        print(
            f'wrote {args.lines} lines, {res["jsonl_bytes"] / 1e9:.2f} GB in {res["write_s"]:.1f} s',
            flush=True)
        mem0 = _mem()
        t = time.perf_counter()
        ds = GranDataset(path, pipeline=[])
        res['index_build_s'] = time.perf_counter() - t
        res['index_bytes'] = osp.getsize(ds._index.shards[0].index_file)
        del ds
        t = time.perf_counter()
        ds = GranDataset(path, pipeline=[])
        res['open_s'] = time.perf_counter() - t
        res['main_rss_mb_before'] = mem0
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(ds), size=args.samples)
        t = time.perf_counter()
        for i in idx:
            ds.get_data_info(int(i))
        res['random_access_records_per_s_1proc'] = args.samples / (time.perf_counter() - t)
        res['main_rss_mb_after'] = _mem()
        print(json.dumps(res), flush=True)
        ctx = mp.get_context('fork')
        q = ctx.Queue()
        procs = [
            ctx.Process(target=_reader, args=((ds, args.seconds, 100 + k, q), )) for k in range(args.workers)
        ]
        for p in procs:
            p.start()
        res['workers'] = [q.get() for _ in procs]
        for p in procs:
            p.join()
        # What mmengine's default (every record parsed, pickled into one buffer per process) would cost.
        sample = [ds.get_data_info(int(i)) for i in idx[:20000]]
        res['pickled_bytes_per_record'] = float(np.mean([len(pickle.dumps(s, protocol=4)) for s in sample]))
        res['jsonl_bytes_per_line'] = res['jsonl_bytes'] / args.lines
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def extrapolate(res: dict, lines: int = GRAN_LINES) -> dict:
    """Linear extrapolation of disk, RAM and time to Gran-29M's 29.5M lines."""
    f = lines / res['lines']
    worker_uss = max(w['USS'] for w in res['workers'])
    return dict(
        lines=lines,
        jsonl_disk_gb=res['jsonl_bytes'] * f / 1e9,
        index_disk_mb=(res['index_bytes'] * f) / 1e6,
        index_build_min_single_shard=res['index_build_s'] * f / 60,
        open_s=res['open_s'],  # mmap of the index files: does not grow with the number of lines
        index_page_cache_mb_shared=res['index_bytes'] * f / 1e6,
        worker_private_uss_mb=worker_uss,
        worker_rss_mb=max(w['VmRSS'] for w in res['workers']),
        mmengine_default_serialized_gb_per_rank=res['pickled_bytes_per_record'] * lines / 1e9)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lines', type=int, default=3_000_000)
    parser.add_argument('--samples', type=int, default=100_000, help='random reads in the main process')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--seconds', type=float, default=20.0, help='read time per worker')
    parser.add_argument('--tmp-dir', default=None, help='parent of the temp dir (default: system temp)')
    parser.add_argument('--keep', action='store_true', help='keep the generated file')
    parser.add_argument('--out', default=None, help='write the figures as JSON here')
    args = parser.parse_args(argv)
    res = run(args)
    res['extrapolated_29.5M'] = extrapolate(res)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    sys.exit(main())
