# Gran-29M-style pretraining data at the paper's 512 px: sharded Gran JSONL under data_root.
# Layout: {data_root}/annotations/train-*.jsonl, {data_root}/annotations/val*.jsonl, images under img_prefix.
data_root = 'data/gran/'
img_prefix = 'images/'
train_ann_file = 'annotations/train-*.jsonl'
val_ann_file = 'annotations/val*.jsonl'
img_size = 512
box_style = 'decimal3'  # or 'int999', 'xtuner_refcoco'
num_region_tasks = 4  # Bbox2Caption tasks per image (ours)
max_distill_regions = 4
task_seed = 0
train_batch_size = 8  # per GPU; the paper's global batch is 256
val_batch_size = 8
num_workers = 8
index_cache_dir = None  # where offset indexes go if the annotation folder is read-only

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
val_pipeline = [_load, dict(_sample_tasks, tasks=dict(bbox2caption=num_region_tasks))] + _to_model

train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=num_workers,
    # persistent workers are safe: the sampler sends the epoch with every index
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='granvit.EpochTaggedSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='granvit.GranDataset',
        data_root=data_root,
        ann_file=train_ann_file,
        data_prefix=dict(img_path=img_prefix),
        on_bad_record='skip',  # counted and logged; a skipped index draws another, deterministically
        rules=dict(clip_tolerance=2.0, bad_region='record'),
        index_cache_dir=index_cache_dir,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=num_workers,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='granvit.GranDataset',
        data_root=data_root,
        ann_file=val_ann_file,
        data_prefix=dict(img_path=img_prefix),
        test_mode=True,
        on_bad_record='raise',
        index_cache_dir=index_cache_dir,
        pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='granvit.RegionCaptionMetric')
test_evaluator = val_evaluator
