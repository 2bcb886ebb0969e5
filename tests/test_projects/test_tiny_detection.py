"""The toy chain's transfer step: the tiny detection config trains through mmdet's packaged train.py from a
stage-1 checkpoint, and a checkpoint that does not fit stops the run instead of training from random
weights."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'projects', 'granvit_det', 'configs',
                  'retinanet_granvit-tiny_simplefpn_gransynth-64px.py')


@pytest.fixture(scope='module')
def det_data(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    from granvit_mm.toy.gran_synth_coco import gran_synth_to_coco
    root = str(tmp_path_factory.mktemp('synth_det'))
    generate(root, num_train=24, num_val=8, ocr_fraction=0.25)
    counts = gran_synth_to_coco(root, 'train', osp.join(root, 'annotations', 'train_coco_shape.json'))
    gran_synth_to_coco(root, 'val', osp.join(root, 'annotations', 'val_coco_shape.json'))
    assert counts['classes'] == 5 and 0 < counts['images'] < 24  # OCR pages have no objects
    return root


def _stage1_checkpoint(path, prefix='backbone.'):
    from granvit_mm.models.backbones import GranViT
    vit = GranViT(arch='tiny', img_size=64, patch_size=8, final_norm=False)
    torch.save(dict(state_dict={prefix + k: v for k, v in vit.state_dict().items()}), path)
    return vit


def _train(root, work_dir, checkpoint):
    tools = osp.join(osp.dirname(__import__('mmdet').__file__), '.mim', 'tools')
    opts = [f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
            f'test_dataloader.dataset.data_root={root}/',
            f'val_evaluator.ann_file={root}/annotations/val_coco_shape.json',
            f'test_evaluator.ann_file={root}/annotations/val_coco_shape.json',
            f'model.backbone.init_cfg.checkpoint={checkpoint}', 'train_cfg.max_iters=3',
            'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3',
            'train_dataloader.batch_size=4']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, osp.join(tools, 'train.py'), CONFIG, '--work-dir', str(work_dir),
                           '--cfg-options'] + opts, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_tiny_detection_trains_through_mmdet_tools_from_stage1(det_data, tmp_path):
    ckpt = tmp_path / 'iter_10.pth'
    _stage1_checkpoint(ckpt)
    out = _train(det_data, tmp_path / 'wd', ckpt)
    assert out.returncode == 0, out.stderr[-3000:]
    assert osp.isfile(tmp_path / 'wd' / 'iter_3.pth')
    import glob
    log = open(sorted(glob.glob(str(tmp_path / 'wd' / '*' / '*.log')))[-1]).read()
    assert 'Evaluating bbox' in log and 'PretrainedInit: load from' in log  # 3 iterations: no mAP yet


def test_tiny_detection_refuses_a_checkpoint_without_prefix(det_data, tmp_path):
    ckpt = tmp_path / 'teacher_only.pth'
    _stage1_checkpoint(ckpt, prefix='teacher.module.')  # the config asks for 'backbone.'
    out = _train(det_data, tmp_path / 'wd', ckpt)
    assert out.returncode != 0
    assert "prefix='teacher.module.'" in out.stderr and not osp.isfile(tmp_path / 'wd' / 'iter_3.pth')
