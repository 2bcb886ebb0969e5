# GranViT stage 2, tiny: the tiny stage-1 GranViT (frozen) + its projector + the tiny Qwen2, trained on
# GranSynth Caption2Bbox + global captions with `xtuner train` on 2 CPU cores (numbers: docs/stage2.md).
#
# After `make demo` (GranSynth, the tiny LLM, work_dirs/granvit_pretrain_tiny/iter_1000.pth):
#   python tools/model_converters/granvit_to_hf.py work_dirs/granvit_pretrain_tiny/iter_1000.pth \
#       work_dirs/granvit_pretrain_tiny/hf_encoder
#   OMP_NUM_THREADS=1 python -m xtuner.tools.train \
#       projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py
# (`xtuner train CFG` works too, but exits 0 even when training fails.)
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipVisionModel
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop

from granvit_mm.core.chat_format import QWEN_CHAT
from granvit_mm.datasets.epoch_sampler import EpochTaggedSampler
from granvit_mm.engine.hooks.weights_only_checkpoint import WeightsOnlyCheckpointHook
from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset
from granvit_mm.xtuner.image_processor import GranViTImageProcessor
from granvit_mm.xtuner.llava_model import GranViTLLaVAModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = 'data/tiny_llm'  # python tools/misc/make_tiny_llm.py --data-root data/gran_synth ...
visual_encoder_name_or_path = 'work_dirs/granvit_pretrain_tiny/hf_encoder'  # granvit_to_hf.py output
projector_path = visual_encoder_name_or_path + '/projector'  # the stage-1 projector (None: random)
visual_select_layer = -1  # HF hidden_states index of the stage-1 visual tokens (core/visual_tokens.py)

# Data
data_root = 'data/gran_synth/'
train_ann_file = 'annotations/train*.jsonl'
val_ann_file = 'annotations/val*.jsonl'  # tools/analysis_tools/eval_stage2.py reads it
image_size = 64  # the tower's image_size
prompt_template = QWEN_CHAT  # = xtuner.utils.PROMPT_TEMPLATE.qwen_chat
box_style = 'decimal3'
max_length = 256  # text tokens; the image is one placeholder here and 64 patch tokens in the LLM

# Scheduler & Optimizer (ours: the tiny LLM learns from scratch-ish widths, so a large lr)
batch_size = 16
accumulative_counts = 1
dataloader_num_workers = 0  # tiny images: worker processes cost more than they save on 2 cores
max_iters = 1000
lr = 1e-3
betas = (0.9, 0.999)
weight_decay = 0.0
max_norm = 1.0
warmup_iters = 50  # iterations, not a ratio: a ratio of a tiny run rounds to 0 and mmengine refuses it

# Save
save_steps = 250
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
    freeze_visual_encoder=True,  # the paper freezes GranViT in stage 2
    projector_path=projector_path,
    visual_select_layer=visual_select_layer,
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_name_or_path,
             trust_remote_code=True, attn_implementation='sdpa'),
    visual_encoder=dict(type=SiglipVisionModel.from_pretrained,
                        pretrained_model_name_or_path=visual_encoder_name_or_path),
    use_activation_checkpointing=False)  # tiny: recomputation costs more than it saves

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
    template_map_fn=None,  # None = qwen_chat; or dict(type=template_map_fn_factory, template=...)
    max_length=max_length,
    tasks=dict(global_caption=1, caption2bbox=4),  # the paper's stage-2 tasks
    box_style=box_style)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=EpochTaggedSampler, shuffle=True),  # new task draws every epoch
    collate_fn=dict(type=default_collate_fn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
# OptimWrapper in float32: AmpOptimWrapper asserts an accelerator
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
    dist_cfg=dict(backend='gloo'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
