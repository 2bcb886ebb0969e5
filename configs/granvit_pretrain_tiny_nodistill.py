# Ablation of the tiny run without region self-distillation (caption loss only, no EMA teacher).
_base_ = './granvit_pretrain_tiny.py'
model = dict(distill_loss=None)
custom_hooks = [dict(type='granvit.WeightsOnlyCheckpointHook')]
