# GranViT stage 3, the paper's evaluation protocol: the stage-2 MLLM (GranViT SigLIP2 L/16 @ 512 frozen + its
# projector + Qwen2.5-1.5B-Instruct) instruction-tuned on Open-LLaVA-NeXT 1M (LLaVA JSON: image +
# conversations).
# Every encoder of Table 1 goes through this config with the same LLM; a baseline is one variable away:
#   --cfg-options model.visual_encoder.pretrained_model_name_or_path=/path/to/siglip2-large-patch16-512 \
#                 model.pretrained_pth=work_dirs/<its stage-2 run>/iter_N.pth
# ViT trainable (Table 10): --cfg-options model.freeze_visual_encoder=False (its lr is lr * 0.1, below).
#
#   NPROC_PER_NODE=8 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
# (scripts: `python -m xtuner.tools.train`, which exits non-zero on failure; `xtuner train` exits 0)
# Then: tools/model_converters/xtuner_to_hf_llava.py THIS_CONFIG work_dirs/<run>/iter_N.pth <export> and the
# benchmarks of docs/evaluation.md.
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
from granvit_mm.xtuner.image_processor import GranViTImageProcessor
from granvit_mm.xtuner.instruct_dataset import LLaVAInstructDataset
from granvit_mm.xtuner.llava_model import GranViTLLaVAModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = 'Qwen/Qwen2.5-1.5B-Instruct'  # the base LLM; the stage-2 checkpoint replaces its weights
visual_encoder_name_or_path = 'work_dirs/granvit_pretrain/hf_encoder'  # granvit_to_hf.py; or a baseline tower
stage2_checkpoint = ('work_dirs/granvit_siglip2_l16_512_qwen2.5_1.5b_instruct_full_e1_gpu8_stage2/'
                     'iter_N.pth')  # set to the stage-2 run's last checkpoint
freeze_visual_encoder = True  # the paper's main setting; False: Table 10's trainable ViT
visual_select_layer = -1

# Data: Open-LLaVA-NeXT 1M (its JSON and image folders as the project publishes them)
data_path = 'data/open_llava_next/open-llava-next_instruct_mix1M.json'
image_folder = 'data/open_llava_next'
image_size = 512  # (paper) pad to square, resize to 512; no tiling (docs/evaluation.md says why)
num_visual_tokens = int((512 / 16)**2)  # 1024 patch tokens
prompt_template = PROMPT_TEMPLATE.qwen_chat
max_length = 4096  # text + visual tokens; longer records are counted skips (on_bad_record), never truncated
on_bad_record = 'skip'  # at 1M records: count and log bad ones ('raise' stops at the first, naming it)

# Scheduler & Optimizer (LLaVA-1.5/NeXT's instruction tuning: lr 2e-5, global batch 128, 1 epoch)
batch_size = 4  # per device
accumulative_counts = 4  # 8 devices x 4 x 4 = 128
dataloader_num_workers = 8
max_epochs = 1
optim_type = AdamW
lr = 2e-5
vit_lr_mult = 0.1  # a trainable ViT learns at lr / 10 (LLaVA-NeXT's setting)
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1
warmup_ratio = 0.03

# Save
save_steps = 2000
save_total_limit = 2

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=llm_name_or_path,
                 trust_remote_code=True, padding_side='right')

image_processor = dict(type=GranViTImageProcessor, size=image_size)

model = dict(
    type=GranViTLLaVAModel,
    freeze_llm=False,
    freeze_visual_encoder=freeze_visual_encoder,
    pretrained_pth=stage2_checkpoint,
    visual_select_layer=visual_select_layer,
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_name_or_path,
             trust_remote_code=True),
    visual_encoder=dict(type=SiglipVisionModel.from_pretrained,
                        pretrained_model_name_or_path=visual_encoder_name_or_path))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=LLaVAInstructDataset,
    data_path=data_path,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_size=image_size,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    num_visual_tokens=num_visual_tokens,
    on_bad_record=on_bad_record)

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
    paramwise_cfg=dict(custom_keys={'visual_encoder.': dict(lr_mult=vit_lr_mult)}),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16')

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
    dict(type=WeightsOnlyCheckpointHook),
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
