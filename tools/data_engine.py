"""Build Gran JSONL from raw images with the data engine (docs/data_engine.md).

    python tools/data_engine.py configs/data_engine/gransynth_demo.py \
        --input <folder | list.txt | gran.jsonl> \
        --work-dir work_dirs/engine_out [--workers 2 | --launcher ray [--ray-address auto]]

Writes ``<work-dir>/gran/part-*.jsonl`` (what GranDataset reads: ``ann_file`` and ``data_prefix`` are in the
manifest), ``<work-dir>/manifest.json`` (counts per stage, rejects by reason, the stages' settings) and
per-shard stats. Rerun the same command after a crash or kill: finished shards are skipped.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='an engine config (configs/data_engine/*.py)')
    p.add_argument('--input', required=True,
                   help='a folder of images, a text list of paths, or a Gran .jsonl')
    p.add_argument('--work-dir', required=True, help='where shards, stats and the manifest go')
    p.add_argument('--img-root', help='the folder record paths are relative to (default: the folder, or the '
                   "list's / jsonl's folder)")
    p.add_argument('--source', default=None, help="the records' source when the input does not name one "
                   "(default: the config's `source`, else 'images')")
    p.add_argument('--workers', type=int, default=1, help='local processes that split the shards')
    p.add_argument('--launcher', choices=['local', 'ray'], default='local')
    p.add_argument('--ray-address', default=None, help="a Ray cluster ('auto' inside `ray job submit`); "
                   'default: a local Ray')
    p.add_argument('--ray-num-cpus', type=int, default=None, help='CPUs of the local Ray')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config values')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from mmengine.config import Config

    from granvit_mm.data_engine import run_engine
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg = cfg.to_dict()
    manifest = run_engine(cfg, args.input, args.work_dir, args.img_root,
                          args.source or cfg.get('source', 'images'),
                          args.workers, args.launcher, args.ray_address, args.ray_num_cpus)
    keys = ('inputs', 'written', 'rejected_total', 'regions_written', 'rejected', 'counts')
    print(json.dumps({k: manifest[k] for k in keys}, indent=1))
    print(f'[data_engine] manifest: {os.path.join(args.work_dir, "manifest.json")}')
    return manifest


if __name__ == '__main__':
    main()
