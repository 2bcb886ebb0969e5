# Named alias of configs/granvit_pretrain_tiny.py.
_base_ = '../granvit_pretrain_tiny.py'
