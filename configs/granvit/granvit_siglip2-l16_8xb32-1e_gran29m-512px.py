# Named alias of configs/granvit_pretrain.py
# (OpenMMLab naming: model_gpus x batch-schedule_data-resolution).
_base_ = '../granvit_pretrain.py'
