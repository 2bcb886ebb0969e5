"""Train a GranViT config (stage 1), OpenMMLab style.

    python tools/train.py configs/granvit_pretrain_tiny.py [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options k=v ...] [--launcher pytorch]
    bash tools/dist_train.sh configs/granvit_pretrain_tiny.py 2     # 2 processes: GPUs, or CPU with gloo

Configs with ``runner_type='FlexibleRunner'`` (configs/granvit_pretrain_fsdp.py, ..._deepspeed.py) are built
with MMEngine's FlexibleRunner and its strategy.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import granvit_mm.engine  # noqa: F401  (fills the registries even without custom_imports)
import granvit_mm.evaluation  # noqa: F401
import granvit_mm.models  # noqa: F401
from granvit_mm.core.paths import MissingPathError
from granvit_mm.engine.checkpoint_io import latest_checkpoint
from granvit_mm.engine.dist import setup_distributed
from granvit_mm.engine.faults import describe_stop


def parse_args():
    parser = argparse.ArgumentParser(description='Train a GranViT model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest one in work_dir if no '
                        'path is given')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale lr by the total batch size')
    parser.add_argument('--no-validate', action='store_true', help='do not evaluate during training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value in xxx=yyy format')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args) -> Config:
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    if args.resume == 'auto':
        # the newest checkpoint that loads, even if a kill left `last_checkpoint` empty (None: start afresh)
        cfg.resume, cfg.load_from = True, latest_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def check_data(cfg: Config) -> None:
    """Stop before anything is built, saying what to set or run, when the training data root is missing."""
    loader = cfg.get('train_dataloader') or {}
    dataset = loader.get('dataset', {}) if isinstance(loader, dict) else {}
    root = dataset.get('data_root', '') if isinstance(dataset, dict) else ''
    if not root or osp.isdir(root):
        return
    if 'gran_synth' in str(root):
        raise SystemExit(f'GranSynth data not found at {root!r}. Generate it first: '
                         f'python tools/misc/make_gran_synth.py --out-dir {root}')
    raise SystemExit(f'Training data not found at data_root={root!r}. Set `data_root` and '
                     '`train_ann_files` in the config, or pass `--cfg-options '
                     'train_dataloader.dataset.data_root=DIR '
                     'train_dataloader.dataset.ann_file="annotations/train-*.jsonl"`; DIR must hold Gran '
                     'JSONL shards (one JSON object per image, docs/method.md) and their images.')


def main():
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    check_data(cfg)
    cfg = setup_distributed(cfg, args.launcher)  # gloo on CPU: MMEngine's init_dist needs CUDA
    try:
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    except MissingPathError as err:  # a missing checkpoint / LLM: the message says what to set or run
        raise SystemExit(f'[granvit] {err}')
    try:
        runner.train()
    except Exception as err:  # say what stopped the run and what --resume will take, then re-raise
        if runner.rank == 0:
            print(describe_stop(err, runner.work_dir, runner.iter), file=sys.stderr, flush=True)
        raise


if __name__ == '__main__':
    main()
