"""The tiny SigLIP stand-in's position-table option (docs/toy_grounding.md)."""
import math

import torch

from granvit_mm.toy.tiny_siglip import build_tiny_siglip


def _table(model):
    return model.vision_model.embeddings.position_embedding.weight


def test_position_init_std_redraws_only_the_vision_position_table():
    default, wide = build_tiny_siglip(64, 0, seed=0), build_tiny_siglip(64, 0, position_init_std=2.0, seed=0)
    # transformers' own init is kept by default: std 1/sqrt(width)
    assert abs(_table(default).std().item() - 1 / math.sqrt(64)) < 0.01
    assert abs(_table(wide).std().item() - 2.0) < 0.05
    assert abs(_table(wide).mean().item()) < 0.05
    # every other weight is the default build's, and the draw is seeded
    others = [k for k in default.state_dict() if 'vision_model.embeddings.position_embedding' not in k]
    assert all(torch.equal(default.state_dict()[k], wide.state_dict()[k]) for k in others)
    assert torch.equal(_table(wide), _table(build_tiny_siglip(64, 0, position_init_std=2.0, seed=0)))
    assert not torch.equal(_table(wide), _table(build_tiny_siglip(64, 0, position_init_std=2.0, seed=1)))
