# GranSynth, the embedded synthetic set: 64 px inputs so a tiny model learns on CPU.
# Make the data first: python tools/misc/make_gran_synth.py --out-dir data/gran_synth
data_root = 'data/gran_synth/'
img_size = 64
box_style = 'decimal3'
num_region_tasks = 4
max_distill_regions = 4
task_seed = 0
train_batch_size = 16
val_batch_size = 16
num_workers = 0  # tiny images: worker processes cost more than they save on 2 cores

# One pipeline; train and val differ only in the tasks they draw.
_load = dict(type='granvit.LoadGranImage')
_sample_tasks = dict(type='granvit.SampleRegionTasks', seed=task_seed,
                     max_distill_regions=max_distill_regions)
_to_model = [
    dict(type='granvit.GranSquareResize', size=img_size, pad_val=(127, 127, 127)),
    dict(type='granvit.PackGranInputs', box_style=box_style),
]
train_pipeline = [_load, dict(_sample_tasks, tasks=dict(global_caption=1, bbox2caption=num_region_tasks))
                  ] + _to_model
# Stage-1 monitor: Bbox2Caption only, drawn at epoch 0 (a fixed set), scored by ROUGE-L.
val_pipeline = [_load, dict(_sample_tasks, tasks=dict(bbox2caption=num_region_tasks))] + _to_model

train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=num_workers,
    persistent_workers=False,
    # (epoch, index) pairs: task draws change every epoch and agree across workers and ranks
    sampler=dict(type='granvit.EpochTaggedSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='granvit.GranDataset',
        data_root=data_root,
        ann_file='annotations/train*.jsonl',
        data_prefix=dict(img_path='images/'),
        on_bad_record='skip',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=num_workers,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='granvit.GranDataset',
        data_root=data_root,
        ann_file='annotations/val*.jsonl',
        data_prefix=dict(img_path='images/'),
        test_mode=True,
        on_bad_record='raise',
        pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='granvit.RegionCaptionMetric')
test_evaluator = val_evaluator
