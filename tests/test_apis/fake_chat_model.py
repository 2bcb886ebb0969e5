"""A scripted VisionChatModel: records what the inferencer asks and answers from a table (no LLM)."""
import torch

from granvit_mm.models.backbones import GranViT


class FakeChatModel:
    input_size = 64
    box_style = 'decimal3'
    patch_size = 8

    def __init__(self, answers=None):
        self.backbone = GranViT(arch='tiny', img_size=64, patch_size=8)
        self.answers = dict(answers or {})
        self.calls = []

    def dense_features(self, pixels):
        return self.backbone(pixels)[-1]

    def answer(self, pixels, questions, max_new_tokens=None):
        self.calls.append(dict(pixels=pixels.clone(), questions=[list(q) for q in questions],
                               max_new_tokens=max_new_tokens))
        return [[self.answers.get(q, 'no answer') for q in qs] for qs in questions]

    def max_new_tokens_for(self, answer):
        return 99


def fake_inferencer(monkeypatch, tmp_path, answers=None, config=None, **kwargs):
    from granvit_mm.apis import CHAT_MODEL_LOADERS, GranViTInferencer
    fake = FakeChatModel(answers)
    monkeypatch.setitem(CHAT_MODEL_LOADERS, 'fake', lambda cfg, ckpt, **kw: fake)
    ckpt = tmp_path / 'fake.pth'
    torch.save({}, ckpt)
    return GranViTInferencer(config or dict(model=dict(type='Fake')), str(ckpt), stage='fake', **kwargs), fake
