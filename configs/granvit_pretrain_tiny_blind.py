# Blind baseline of the tiny run: same LLM and training, but the ViT sees a blank image, so the visual tokens
# carry no image information. The gap to granvit_pretrain_tiny.py is what the ViT learned.
_base_ = './granvit_pretrain_tiny.py'
model = dict(blind=True)
