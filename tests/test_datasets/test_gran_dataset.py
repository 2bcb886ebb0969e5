import os.path as osp
import pickle

import pytest
import torch
from gran_data_helpers import pipeline

from granvit_mm.datasets import GranDataset
from granvit_mm.registry import DATASETS


def synth(synth_dir, split='train', **kw):
    kw.setdefault('pipeline', pipeline(size=32))
    return DATASETS.build(
        dict(
            type='granvit.GranDataset',
            data_root=synth_dir,
            ann_file=f'annotations/{split}.jsonl',
            data_prefix=dict(img_path='images/'),
            **kw))


def test_reads_gransynth_through_pipeline(synth_dir):
    ds = synth(synth_dir)
    assert isinstance(ds, GranDataset) and len(ds) == 12
    for i in range(len(ds)):
        item = ds[i]
        s = item['data_samples']
        assert item['inputs'].shape == (3, 32, 32) and item['inputs'].dtype == torch.uint8
        assert 1 <= len(s.tasks) <= 3
        assert s.distill_bboxes.shape[1] == 4 and 1 <= len(s.distill_bboxes) <= 4
        assert (s.distill_bboxes >= 0).all() and (s.distill_bboxes <= 32).all()
        assert s.sample_idx == i and s.line == i + 1 and s.shard.endswith('train.jsonl')
        for t in s.tasks:
            if t['task'] == 'bbox2caption':
                assert len(t['answer'].split()) <= 10


def test_data_info_fields_and_prefix(synth_dir):
    info = synth(synth_dir, pipeline=[]).get_data_info(0)
    assert info['img_path'] == osp.join(synth_dir, 'images', 'train', '000000.png')
    assert info['gt_bboxes'].shape == (len(info['region_captions']), 4)
    assert (info['epoch'], info['sample_idx'], info['line']) == (0, 0, 1)


def test_ann_file_list_glob_and_indices(synth_dir):
    both = GranDataset(['annotations/train.jsonl', 'annotations/val*.jsonl'],
                       data_root=synth_dir,
                       pipeline=[])
    assert len(both) == 16
    assert both.get_data_info(12)['shard'].endswith('val.jsonl')
    sub = GranDataset('annotations/train.jsonl', data_root=synth_dir, indices=[5, 2], pipeline=[])
    assert len(sub) == 2 and sub.get_data_info(0)['line'] == 6
    first = GranDataset('annotations/train.jsonl', data_root=synth_dir, indices=3, pipeline=[])
    assert len(first) == 3
    sub2 = both.get_subset([0, 15])
    assert len(sub2) == 2 and len(both) == 16 and sub2.get_data_info(1)['line'] == 4
    with pytest.raises(IndexError):
        sub2.get_data_info(2)


def test_lazy_init_and_pickle_for_workers(synth_dir):
    ds = synth(synth_dir, lazy_init=True)
    assert ds._index is None
    blob = pickle.dumps(ds)
    assert len(blob) < 20000  # what a spawn-started worker receives: no annotations
    ds2 = pickle.loads(blob)
    assert len(ds2) == 12 and ds._index is None


def test_sampling_deterministic_across_instances_and_epochs(synth_dir):
    a, b = synth(synth_dir), pickle.loads(pickle.dumps(synth(synth_dir)))
    ta = [a[i]['data_samples'].tasks for i in range(12)]
    assert ta == [b[i]['data_samples'].tasks for i in range(12)]
    assert [a[(0, i)]['data_samples'].tasks for i in range(12)] == ta  # a plain index is epoch 0
    assert [a[(1, i)]['data_samples'].tasks for i in range(12)] != ta


def _tasks_by_image(batches):
    return {ds.sample_idx: ds.tasks for b in batches for ds in b['data_samples']}


def test_epoch_tagged_sampler_redraws_each_epoch_in_persistent_workers(synth_dir):
    """The shipped configs' sampler: epoch 1 draws other tasks than epoch 0 even with persistent workers,
    and every worker count and every rank of a 2-rank split agrees with the single-process draw."""
    from mmengine.dataset import pseudo_collate

    from granvit_mm.datasets import EpochTaggedSampler
    ds = synth(synth_dir)

    def run(num_workers, world_size=1, rank=0, epochs=2):
        sampler = EpochTaggedSampler(ds, shuffle=True, seed=3)
        sampler.rank, sampler.world_size = rank, world_size
        sampler.num_samples = len(range(rank, len(ds), world_size))
        sampler.total_size = len(ds)
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=num_workers, sampler=sampler,
                                             collate_fn=pseudo_collate, persistent_workers=num_workers > 0)
        out = []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            out.append(_tasks_by_image(list(loader)))
        return out

    single = run(0)
    assert sorted(single[0]) == list(range(12))
    assert single[0] != single[1]  # per-epoch draws
    assert run(2) == single  # persistent workers see the epoch
    ranks = [run(0, world_size=2, rank=r) for r in range(2)]
    for epoch in range(2):
        merged = {**ranks[0][epoch], **ranks[1][epoch]}
        assert merged == single[epoch]


def test_filter_cfg_rejected(synth_dir):
    with pytest.raises(ValueError, match='filter_gran'):
        synth(synth_dir, filter_cfg=dict(filter_empty_gt=True))


def test_dataloader_with_workers_and_default_sampler(synth_dir):
    from mmengine.dataset import DefaultSampler, pseudo_collate
    ds = synth(synth_dir)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=2, collate_fn=pseudo_collate, sampler=DefaultSampler(ds, shuffle=False))
    batches = list(loader)
    assert sum(len(b['inputs']) for b in batches) == 12
    tasks = [s.tasks for b in batches for s in b['data_samples']]
    assert tasks == [ds[i]['data_samples'].tasks for i in range(12)]  # workers agree with the main process


def test_stage2_and_val_pipelines(synth_dir):
    ds = synth(synth_dir, 'val', test_mode=True, pipeline=pipeline(size=32, tasks=dict(caption2bbox=2)))
    assert ds.on_bad_record == 'raise'
    for i in range(len(ds)):
        for t in ds[i]['data_samples'].tasks:
            assert t['task'] == 'caption2bbox' and t['answer'].startswith('[')
