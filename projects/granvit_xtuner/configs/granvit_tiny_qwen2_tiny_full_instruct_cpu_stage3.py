# GranViT stage 3, tiny: instruction tuning (the paper's evaluation protocol) of the tiny stage-2 MLLM on
# GranSynth as LLaVA-format instruction data, with `xtuner train` on 2 CPU cores (docs/evaluation.md).
#
# After `make stage2-demo` (the stage-2 checkpoint below, the exported tower):
#   python tools/misc/make_gran_synth_instruct.py --data-root data/gran_synth \
#       --out-dir data/gran_synth_instruct
#   OMP_NUM_THREADS=1 python -m xtuner.tools.train \
#       projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_instruct_cpu_stage3.py
# A baseline encoder is one variable away (everything else equal): a plain SigLIP/CLIP vision tower directory
# and the stage-2 checkpoint trained on it, e.g.
#   --cfg-options model.visual_encoder.pretrained_model_name_or_path=data/tiny_siglip \
#                 model.pretrained_pth=work_dirs/eval_demo/siglip_stage2/iter_1000.pth
# ViT trainable (the paper's Table 10): --cfg-options model.freeze_visual_encoder=False
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipVisionModel
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop

from granvit_mm.core.chat_format import QWEN_CHAT
from granvit_mm.engine.hooks.weights_only_checkpoint import WeightsOnlyCheckpointHook
from granvit_mm.xtuner.image_processor import GranViTImageProcessor
from granvit_mm.xtuner.instruct_dataset import LLaVAInstructDataset
from granvit_mm.xtuner.llava_model import GranViTLLaVAModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = 'data/tiny_llm'  # the base LLM; the stage-2 checkpoint replaces its weights
# or a SigLIP/CLIP tower (baseline)
visual_encoder_name_or_path = 'work_dirs/granvit_pretrain_tiny/hf_encoder'
# projector + LLM
stage2_checkpoint = 'work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2/iter_1000.pth'
freeze_visual_encoder = True  # the paper's default; False trains the ViT too (Table 10)
visual_select_layer = -1

# Data (LLaVA JSON: image + conversations)
data_path = 'data/gran_synth_instruct/train.json'  # tools/misc/make_gran_synth_instruct.py
image_folder = 'data/gran_synth/images'
image_size = 64  # the tower's image_size
num_visual_tokens = 64  # (64 / 8)^2: every patch token (core/visual_tokens.py)
prompt_template = QWEN_CHAT
max_length = 512  # text + visual tokens of one sample; a longer record is a bad record, never truncated
on_bad_record = 'raise'  # or 'skip' (counted and logged)

# Scheduler & Optimizer
batch_size = 16
accumulative_counts = 1
dataloader_num_workers = 0
max_iters = 300
lr = 2e-4
betas = (0.9, 0.999)
weight_decay = 0.0
max_norm = 1.0
warmup_iters = 20

# Save
save_steps = 100
save_total_limit = 1

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
             trust_remote_code=True, attn_implementation='sdpa'),
    visual_encoder=dict(type=SiglipVisionModel.from_pretrained,
                        pretrained_model_name_or_path=visual_encoder_name_or_path),
    use_activation_checkpointing=False)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=LLaVAInstructDataset,
    data_path=data_path,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_size=image_size,
    template_map_fn=None,  # None = qwen_chat; or dict(type=template_map_fn_factory, template=...)
    max_length=max_length,
    num_visual_tokens=num_visual_tokens,
    on_bad_record=on_bad_record)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts)

param_scheduler = [
    dict(type=LinearLR, start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=lr * 0.05, by_epoch=False, begin=warmup_iters, end=max_iters),
]

train_cfg = dict(type=TrainLoop, max_iters=max_iters)

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
    dist_cfg=dict(backend='gloo'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
