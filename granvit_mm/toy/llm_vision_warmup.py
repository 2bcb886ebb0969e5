"""Teach the tiny LLM to read visual tokens before it is frozen for stage 1 (a toy-only step).

A 2-layer, 64-wide LLM pretrained on text alone has no heads that look at its context, so a ViT trained
through it (frozen) can only move the answers a little (docs/pretraining.md). Qwen2.5-1.5B, the paper's
frozen LLM, reads context well but has never seen images either; what it brings is general in-context
reading, which a tiny LM cannot learn from text in a minute. This step buys that ability the cheap way:
the LLM and a fresh projector are trained for a few hundred steps on GranSynth's Bbox2Caption and
global-caption turns, on the tokens of a ViT held fixed at the start encoder (the tiny SigLIP in `make demo`);
then the projector is discarded and only the LLM is saved. Stage 1 starts a fresh projector and a fresh copy
of the same start encoder and trains them through this LLM, frozen. The docs say what the LLM has seen:
GranSynth training images through the start encoder.

The ViT stays fixed because that was measured better (docs/pretraining.md): trained along at the warm-up's
learning rate, it drifts away from the encoder stage 1 starts from (warm-up loss 0.489 vs 0.444, stage-1 gap
+15.8 vs +17.9 at 250 iterations).
"""
import random
from typing import Dict, List, Optional

import torch

from .fit import fit


def warm_up_llm_on_images(llm_dir: str, data_root: str, steps: int = 300, batch_size: int = 32,
                          lr: float = 2e-3, img_size: int = 64, patch_size: int = 8, seed: int = 1,
                          vit_init: Optional[str] = None, train_vit: bool = False,
                          tasks: Optional[Dict[str, float]] = None, log_every: int = 50) -> List[float]:
    """Train the LLM in ``llm_dir`` and a throwaway projector on the tokens of a tiny ViT (fixed unless
    ``train_vit``; ``vit_init`` or random weights) on ``tasks`` per image (default: stage 1's, a global
    caption and 4 Bbox2Caption turns); save the LLM back."""
    from mmengine.dataset import pseudo_collate

    from granvit_mm.datasets.pipeline import gran_pipeline
    from granvit_mm.datasets.transforms.tasks import STAGE1_TASKS
    from granvit_mm.registry import DATASETS, MODELS
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = MODELS.build(dict(
        type='granvit.GranViTPretrainer', distill_loss=None,
        backbone=dict(type='granvit.GranViT', arch='tiny', img_size=img_size, patch_size=patch_size,
                      init_cfg=dict(type='Pretrained', checkpoint=vit_init) if vit_init else None),
        head=dict(type='granvit.RegionARHead', llm_path=llm_dir, llm_dtype='float32')))
    model.init_weights()
    model.backbone.requires_grad_(train_vit)
    model.head.llm.requires_grad_(True)  # the one place an LLM is trained: making the toy asset
    dataset = DATASETS.build(dict(
        type='granvit.GranDataset', data_root=data_root, ann_file='annotations/train*.jsonl',
        data_prefix=dict(img_path='images/'),
        pipeline=gran_pipeline(img_size, tasks or STAGE1_TASKS, seed=seed)))
    model.train()
    model.head.llm.train()

    def loss_at(step):
        batch = pseudo_collate([dataset[(step, rng.randrange(len(dataset)))] for _ in range(batch_size)])
        return model(**model.data_preprocessor(batch, training=True), mode='loss')['loss_caption']

    losses = fit([p for p in model.parameters() if p.requires_grad], loss_at, steps, lr, warmup_steps=20,
                 log_prefix='llm_vision_warmup', log_every=log_every)
    llm = model.head.llm.eval()
    llm.save_pretrained(llm_dir)
    return losses
