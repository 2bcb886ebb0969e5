"""The paper's Table 1 (per benchmark + group averages, markdown) from lmms-eval results of several encoders.

    # read results that lmms-eval wrote (its --output_path), one NAME=PATH per encoder
    python tools/analysis_tools/eval_table.py GranViT=work_dirs/eval_demo/lmms/granvit \
        SigLIP=work_dirs/eval_demo/lmms/siglip --out work_dirs/eval_demo/table.md
    # or run lmms-eval first on transformers exports (in lmms-eval's environment, `make lmms-eval-env`)
    python tools/analysis_tools/eval_table.py \
        GranViT=work_dirs/granvit_export SigLIP=work_dirs/siglip_export \
        --tasks gransynth_rec,gransynth_attr_vqa --include-path work_dirs/lmms_tasks --work-dir work_dirs/lmms

A PATH holding a ``config.json`` is an export: with ``--tasks`` it is scored by
``python -m lmms_eval --model llava_hf`` into ``<work-dir>/<NAME>`` first (``--device cuda`` on a GPU
machine).
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

from granvit_mm.benchmarks.table import build_table, read_scores, to_markdown

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_lmms_eval(export: str, out_dir: str, args) -> str:
    """Score ``export`` with lmms-eval's llava_hf model; returns its --output_path."""
    device = f'device={args.device}'
    if args.device == 'cpu':
        device += f',device_map={args.device}'
    cmd = [args.lmms_python, '-m', 'lmms_eval', '--model', 'llava_hf', '--model_args',
           f'pretrained={osp.abspath(export)},{device},trust_remote_code=True', '--tasks', args.tasks,
           '--batch_size', '1', '--output_path', out_dir, '--log_samples']
    if args.include_path:
        cmd += ['--include_path', args.include_path]
    if args.limit:
        cmd += ['--limit', str(args.limit)]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.setdefault('HF_HUB_OFFLINE', '1')
    env.setdefault('HF_DATASETS_OFFLINE', '1')
    print('[eval_table] ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    return out_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('entries', nargs='+',
                   help='NAME=PATH: lmms-eval results (dir or *_results.json) or an export')
    p.add_argument('--out', default=None, help='also write the markdown table here')
    p.add_argument('--tasks', default=None, help='lmms-eval --tasks for exports (comma-separated)')
    p.add_argument('--include-path', default=None, help='lmms-eval --include_path (our task YAMLs)')
    p.add_argument('--work-dir', default='work_dirs/lmms_eval', help='where exports are scored')
    p.add_argument('--lmms-python', default=osp.join(REPO, '.venv-lmms', 'bin', 'python'),
                   help="lmms-eval's environment (make lmms-eval-env)")
    p.add_argument('--device', default='cpu')
    p.add_argument('--limit', type=int, default=None, help='lmms-eval --limit (questions per task)')
    args = p.parse_args(argv)
    rows = []
    for entry in args.entries:
        name, sep, path = entry.partition('=')
        if not sep or not name or not path:
            sys.exit(f'error: expected NAME=PATH, got {entry!r}')
        if osp.isfile(osp.join(path, 'config.json')):
            if not args.tasks:
                sys.exit(f'error: {path} is an export: give --tasks (and --include-path) to score it')
            path = run_lmms_eval(path, osp.join(args.work_dir, name), args)
        try:
            rows.append((name, read_scores(path)))
        except FileNotFoundError as err:
            sys.exit(f'error: {name}: {err}')
    md = to_markdown(*build_table(rows))
    print(md, end='')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(md)
    return md


if __name__ == '__main__':
    main()
