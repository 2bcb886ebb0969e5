# GranViT stage 1, the paper recipe on MMEngine's FlexibleRunner + FSDPStrategy (PyTorch FSDP), for when the
# per-GPU states outgrow DDP (a larger ViT than L, a larger frozen LLM). At ViT-L + Qwen2.5-1.5B, DDP fits an
# 80 GB GPU with room to spare: see docs/distributed.md for the plan and which strategy to pick at 8/64/128 GPUs.
#   bash tools/dist_train.sh configs/granvit_pretrain_fsdp.py 8
# Checkpoints are gathered to rank 0 ('full' state dict), so they load like DDP ones (tools/test.py, load_from).
_base_ = ['./granvit_pretrain.py']

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        # the frozen LLM and the EMA teacher (requires_grad=False) share FSDP units with trained parameters
        use_orig_params=True,
        # shard gradients and AdamW states, keep parameters gathered between forward and backward: the ViT is
        # small (0.3B) and re-gathering it for backward would cost more communication than it saves memory
        sharding_strategy='SHARD_GRAD_OP',
        # one FSDP unit per transformer block of the ViT and of the LLM (>= 5M parameters)
        auto_wrap_policy=dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
                              min_num_params=int(5e6))),
    state_dict_cfg='full')
# The EMA teacher: GranViTPretrainer moves it in an optimiser step post-hook, from the student's parameters as
# the optimiser holds them. Under FSDP with use_orig_params those are this rank's shard views, see
# docs/distributed.md#the-ema-teacher-under-sharding for what that means and how it is checked.
