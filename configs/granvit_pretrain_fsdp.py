# GranViT stage 1, the paper recipe on MMEngine's FlexibleRunner + FSDPStrategy (PyTorch FSDP), for when the
# per-GPU states outgrow DDP (a larger ViT than L, a larger frozen LLM). At ViT-L + Qwen2.5-1.5B, DDP fits an
# 80 GB GPU with room to spare: see docs/distributed.md for the plan and which strategy to pick at
# 8/64/128 GPUs.
#   bash tools/dist_train.sh configs/granvit_pretrain_fsdp.py 8
# Checkpoints are gathered to rank 0 ('full' state dict), so they load like DDP ones (tools/test.py and
# load_from).
_base_ = ['./granvit_pretrain.py']

runner_type = 'FlexibleRunner'
strategy = dict(
    # MMEngine's FSDPStrategy + global-norm clipping, CPU device, resume (granvit_mm/engine/fsdp.py)
    type='granvit.GranViTFSDPStrategy',
    model_wrapper=dict(
        # the frozen LLM and the EMA teacher (requires_grad=False) share FSDP units with trained parameters
        use_orig_params=True,
        # every rank starts from rank 0's weights, as DDP does (a randomly initialised projector would
        # otherwise be a different draw on each rank if anything consumed random numbers unevenly)
        sync_module_states=True,
        # shard gradients and AdamW states, keep parameters gathered between forward and backward: the ViT is
        # small (0.3B) and re-gathering it for backward would cost more communication than it saves memory
        sharding_strategy='SHARD_GRAD_OP',
        # FSDP units: the student ViT and each of its blocks; the projector is in the root unit. The teacher
        # update gathers the student ViT, so it must be a unit of its own (granvit_mm/engine/fsdp.py)
        auto_wrap_policy=dict(type='granvit_mm.engine.fsdp.wrap_module_classes',
                              class_names=['GranViT', 'GranViTBlock']),
        # Out of FSDP, replicated as under DDP: the frozen LLM (no gradients or optimiser states to shard, and
        # SHARD_GRAD_OP would all-gather its 3 GB of weights every step for nothing; its weights are also left
        # out of checkpoints by RegionARHead's state_dict hook, which FSDP's full state dict refuses) and the
        # EMA teacher (no gradients; a unit that runs no backward keeps its gathered weights under
        # SHARD_GRAD_OP, so an update of its shards would never be seen)
        ignored_modules=['head.llm', 'teacher']),
    state_dict_cfg='full')
# The EMA teacher: GranViTPretrainer moves it in an optimiser step post-hook from the gathered student ViT
# (docs/distributed.md#the-ema-teacher-under-sharding; tested on CPU against DDP).
