# Named alias of configs/granvit_pretrain_tiny_blind.py.
_base_ = '../granvit_pretrain_tiny_blind.py'
