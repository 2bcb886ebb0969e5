# GranViT stage 1, the paper recipe (docs/method.md): SigLIP2 L/16 at 512 px, frozen Qwen2.5-1.5B, Gran JSONL,
# AdamW lr 1e-5, total batch 256 (8 GPUs x 32), one epoch, bf16 AMP, gradient checkpointing, self-distillation
# (lambda 1, EMA alpha 0.9).
#   bash tools/dist_train.sh configs/granvit_pretrain.py 8
# Paths below must exist; a missing one stops the model build with the command that produces it.
_base_ = [
    './_base_/models/granvit_pretrainer_l16_qwen2.5-1.5b.py',
    './_base_/datasets/gran_pretrain_512.py',
    './_base_/schedules/granvit_pretrain_1e.py',
    './_base_/default_runtime.py',
]

# The SigLIP2 L/16-512 vision tower converted to GranViT:
#   python tools/model_converters/siglip2_to_granvit.py /path/to/siglip2-large-patch16-512 <vit_checkpoint>
vit_checkpoint = 'checkpoints/granvit_siglip2-l16-512.pth'
# A Hugging Face directory of Qwen2.5-1.5B
# (e.g. `huggingface-cli download Qwen/Qwen2.5-1.5B --local-dir checkpoints/Qwen2.5-1.5B`).
llm_path = 'checkpoints/Qwen2.5-1.5B'
# Gran JSONL shards (docs/method.md format) and their images.
data_root = 'data/gran/'
train_ann_files = ['annotations/train-*.jsonl']
val_ann_files = ['annotations/val*.jsonl']

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=vit_checkpoint)),
    head=dict(llm_path=llm_path))

train_dataloader = dict(
    batch_size=32, num_workers=8, dataset=dict(data_root=data_root, ann_file=train_ann_files))
val_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root, ann_file=val_ann_files))
test_dataloader = val_dataloader

# Distillation at full weight from the first step (the paper's setting: no DistillScheduleHook needed); the
# EMA teacher follows every optimiser step with model.ema_momentum.
default_hooks = dict(checkpoint=dict(interval=2000, max_keep_ckpts=3))
