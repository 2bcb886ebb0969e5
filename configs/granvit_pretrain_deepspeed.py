# GranViT stage 1, the paper recipe on MMEngine's FlexibleRunner + DeepSpeedStrategy (ZeRO stage 2: AdamW
# states and gradients sharded, bf16). Needs DeepSpeed, which is not in the pinned stack: MMEngine 0.10.6's
# strategy works with DeepSpeed 0.15.x (seen on CPU with gloo), not with 0.19 (docs/distributed.md).
#   bash tools/dist_train.sh configs/granvit_pretrain_deepspeed.py 8
_base_ = ['./granvit_pretrain.py']

runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    fp16=dict(enabled=False),
    bf16=dict(enabled=True),
    zero_optimization=dict(
        stage=2,
        allgather_partitions=True,
        reduce_scatter=True,
        allgather_bucket_size=int(5e8),
        reduce_bucket_size=int(5e8),
        overlap_comm=True,
        contiguous_gradients=True),
    gradient_clipping=1.0,
    # checkpoints without the frozen LLM (it is rebuilt from model.head.llm_path)
    exclude_frozen_parameters=True)
# DeepSpeed owns the optimiser step, AMP and clipping: MMEngine's DeepSpeedOptimWrapper replaces
# AmpOptimWrapper; granvit.DeepSpeedTeacherOptimWrapper is it plus the EMA teacher update after each applied
# DeepSpeed step (DeepSpeed steps flat copies of the student, which GranViTPretrainer's optimiser post-hook
# cannot see).
optim_wrapper = dict(
    _delete_=True,
    type='granvit.DeepSpeedTeacherOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), weight_decay=0.05))
