# Named alias of configs/granvit_pretrain_tiny_nodistill.py.
_base_ = '../granvit_pretrain_tiny_nodistill.py'
