"""Evaluate a GranViT checkpoint (stage-1 metrics: Bbox2Caption ROUGE-L, Caption2Bbox Acc@IoU0.5).

    python tools/test.py configs/granvit_pretrain_tiny.py work_dirs/.../iter_600.pth [--work-dir DIR]
        [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from granvit_mm.core.paths import MissingPathError
from granvit_mm.engine.dist import setup_distributed


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a GranViT model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save evaluation results')
    parser.add_argument('--out', help='dump the metrics to this json/yaml/pkl file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value in xxx=yyy format')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'[granvit] checkpoint not found at {args.checkpoint!r}')
    cfg.load_from = args.checkpoint
    cfg = setup_distributed(cfg, args.launcher)  # gloo on CPU: MMEngine's init_dist needs CUDA
    try:
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    except MissingPathError as err:  # a missing checkpoint / LLM: the message says what to set or run
        raise SystemExit(f'[granvit] {err}')
    metrics = runner.test()
    if args.out:
        import mmengine
        mmengine.dump(metrics, args.out)


if __name__ == '__main__':
    main()
