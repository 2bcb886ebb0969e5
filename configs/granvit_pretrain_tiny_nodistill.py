# Ablation of the tiny run without region self-distillation (caption loss only, no EMA teacher; the schedule
# hook then has nothing to schedule).
_base_ = './granvit_pretrain_tiny.py'
model = dict(distill_loss=None)
