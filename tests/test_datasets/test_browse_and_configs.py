import os.path as osp

import numpy as np
from gran_data_helpers import REPO
from PIL import Image
from repo_tools import load_tool


def test_browse_dataset_without_config(synth_dir, tmp_path):
    main = load_tool('tools/visualization/browse_dataset.py').main
    out = str(tmp_path / 'browse')
    written = main([
        '--ann-file', 'annotations/train.jsonl', '--data-root', synth_dir, '--size', '64', '--output-dir',
        out, '--max', '3', '--display', '256', '--stage2'
    ])
    assert len(written) == 3
    img = np.asarray(Image.open(written[0]))
    assert img.shape[0] >= 256 and img.shape[1] == 256 + 640


def test_browse_dataset_from_config(synth_dir, tmp_path):
    main = load_tool('tools/visualization/browse_dataset.py').main
    cfg = osp.join(REPO, 'configs', '_base_', 'datasets', 'gran_synth_tiny.py')
    written = main([
        cfg, '--output-dir',
        str(tmp_path / 'b2'), '--max', '2', '--split', 'val', '--cfg-options',
        f'val_dataloader.dataset.data_root={synth_dir}'
    ])
    assert len(written) == 2


def test_dataset_base_configs_build(synth_dir):
    from mmengine.config import Config

    from granvit_mm.registry import DATASETS
    for name in ('gran_synth_tiny', 'gran_pretrain_512'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'datasets', f'{name}.py'))
        assert cfg.val_evaluator == dict(type='granvit.RegionCaptionMetric')
        assert not any(k.startswith('stage2') for k in cfg)  # stage 2 lives under XTuner
        assert cfg.train_dataloader.sampler.type == 'granvit.EpochTaggedSampler'
        for key in ('train_dataloader', 'val_dataloader'):
            split = 'val' if 'val' in key else 'train'
            ds_cfg = dict(cfg[key]['dataset'], data_root=synth_dir, ann_file=f'annotations/{split}.jsonl')
            ds = DATASETS.build(ds_cfg)
            s = ds[0]['data_samples']
            assert s.img_shape == (cfg.img_size, cfg.img_size)
            tasks = {t['task'] for t in s.tasks}
            if key == 'val_dataloader':
                assert tasks == {'bbox2caption'}
            else:
                assert tasks <= {'global_caption', 'bbox2caption'} and 'bbox2caption' in tasks
