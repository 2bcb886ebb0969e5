"""A stage-1 checkpoint made in seconds for inference tests (no training of the ViT).

The tiny LLM is pretrained for a few steps on chat texts of the three tasks, so it answers in the tasks'
formats (a box text for Caption2Bbox) as a real pretrained LLM would; the ViT and projector are freshly
initialised. The checkpoint is laid out like tools/train.py's: ``state_dict`` with ``backbone.*``,
``teacher.module.*``, ``projector.*`` and ``head.*`` minus the frozen LLM, saved weights-only-safe.
"""
import os.path as osp

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'granvit_pretrain_tiny.py')


def make_answering_llm(out_dir: str) -> str:
    """A tiny Qwen2 pretrained on chat texts of the three tasks: it answers in their formats (a box text for
    Caption2Bbox), as a real pretrained LLM would."""
    from granvit_mm.toy.tiny_llm import region_chat_corpus, save_tiny_llm, toy_records
    return save_tiny_llm(out_dir, region_chat_corpus(toy_records(64)), vocab_size=400, pretrain_steps=300,
                         pretrain_kwargs=dict(batch_size=8, seq_len=96, log_every=1000))


def make_stage1_checkpoint(base_dir: str, seed: int = 0) -> dict:
    from mmengine.config import Config

    from granvit_mm.registry import MODELS
    llm = make_answering_llm(osp.join(base_dir, 'tiny_llm'))
    cfg = Config.fromfile(CONFIG)
    cfg.model.head.llm_path = llm
    cfg.model.backbone.init_cfg = None  # random weights instead of the tiny SigLIP of `make tiny-siglip`
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = osp.join(base_dir, 'iter_1.pth')
    torch.save(dict(meta=dict(iter=1), state_dict=model.state_dict()), ckpt)
    return dict(config=CONFIG, checkpoint=ckpt, llm_path=llm, state_dict=model.state_dict())


def synth_images(n: int = 3):
    """GranSynth val images (non-square PIL images) and their records."""
    from granvit_mm.toy.gran_synth import SynthConfig, make_image
    return [make_image(SynthConfig(), 'val', i) for i in range(n)]


def wide_image(width: int = 200, height: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
