# GranViT stage 2 (adaptation), the paper's setting: the stage-1 GranViT (SigLIP2 L/16 @ 512, frozen) + its
# 2-layer projector + Qwen2.5-1.5B-Instruct, projector and LLM trained on Gran Caption2Bbox + global captions.
#
#   python tools/model_converters/granvit_to_hf.py work_dirs/granvit_pretrain/iter_N.pth \
#       work_dirs/granvit_pretrain/hf_encoder
#   NPROC_PER_NODE=8 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2      # or deepspeed_zero3
# (scripts: `python -m xtuner.tools.train`, which exits non-zero on failure; `xtuner train` exits 0)
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipVisionModel
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.dataset.samplers import LengthGroupedSampler
from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop
from xtuner.utils import PROMPT_TEMPLATE

from granvit_mm.engine.hooks.weights_only_checkpoint import WeightsOnlyCheckpointHook
from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset
from granvit_mm.xtuner.image_processor import GranViTImageProcessor
from granvit_mm.xtuner.llava_model import GranViTLLaVAModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = 'Qwen/Qwen2.5-1.5B-Instruct'
visual_encoder_name_or_path = 'work_dirs/granvit_pretrain/hf_encoder'  # made by granvit_to_hf.py
projector_path = visual_encoder_name_or_path + '/projector'  # the stage-1 projector: stage 2 starts from it
visual_select_layer = -1  # HF hidden_states index of the stage-1 visual tokens (core/visual_tokens.py)

# Data (Gran JSONL shards, read lazily; docs/data.md)
data_root = 'data/gran/'
train_ann_file = 'annotations/train-*.jsonl'
val_ann_file = 'annotations/val*.jsonl'  # tools/analysis_tools/eval_stage2.py reads it
image_size = 512  # (paper) pad to square, resize to 512
prompt_template = PROMPT_TEMPLATE.qwen_chat
box_style = 'decimal3'
max_length = int(2048 - (512 / 16)**2)  # text tokens; the image adds 1024 patch tokens in the LLM

# Scheduler & Optimizer: (paper) AdamW, lr 1e-5, global batch 256, 1 epoch; warm-up and cosine are XTuner's
batch_size = 8  # per device
accumulative_counts = 4  # 8 devices x 8 x 4 = 256
dataloader_num_workers = 8
max_epochs = 1
optim_type = AdamW
lr = 1e-5
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 2000
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=llm_name_or_path,
                 trust_remote_code=True, padding_side='right')

image_processor = dict(type=GranViTImageProcessor, size=image_size)

model = dict(
    type=GranViTLLaVAModel,
    freeze_llm=False,
    freeze_visual_encoder=True,  # (paper) GranViT frozen in stage 2
    projector_path=projector_path,
    visual_select_layer=visual_select_layer,
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_name_or_path,
             trust_remote_code=True),
    visual_encoder=dict(type=SiglipVisionModel.from_pretrained,
                        pretrained_model_name_or_path=visual_encoder_name_or_path))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=GranLLaVADataset,
    data_root=data_root,
    ann_file=train_ann_file,
    data_prefix=dict(img_path='images/'),
    tokenizer=tokenizer,
    image_size=image_size,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    tasks=dict(global_caption=1, caption2bbox=4),  # (paper) global caption + Caption2Bbox; 4 regions (ours)
    box_style=box_style)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    dataset=train_dataset,
    sampler=dict(type=LengthGroupedSampler, length_property='modality_length',
                 per_device_batch_size=batch_size * accumulative_counts),
    collate_fn=dict(type=default_collate_fn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16')  # Qwen2.5 is a bf16 model (fp16 activations can overflow)

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=True, begin=0, end=warmup_ratio * max_epochs,
         convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs, end=max_epochs,
         convert_to_iter_based=True),
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(type=WeightsOnlyCheckpointHook),  # checkpoints torch's safe loader accepts (resume, export, eval)
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
log_processor = dict(by_epoch=False)
