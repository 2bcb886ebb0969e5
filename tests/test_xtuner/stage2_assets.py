"""Tiny stand-ins for stage 2, built through the real code paths: a tiny Qwen2 (``save_pretrained``), a tiny
stage-1 checkpoint (``GranViTPretrainer`` from the tiny config, student moved away from its teacher) and its
``granvit_to_hf`` export."""
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config, ConfigDict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STAGE1_TINY = osp.join(ROOT, 'configs', 'granvit_pretrain_tiny.py')


def make_tiny_llm(out_dir: str, steps: int = 120) -> str:
    """Tiny Qwen2 + tokenizer; a few pretraining steps so greedy answers are text, not an instant stop."""
    from granvit_mm.toy.tiny_llm import region_chat_corpus, save_tiny_llm, toy_records
    return save_tiny_llm(out_dir, region_chat_corpus(toy_records(16)), vocab_size=400, pretrain_steps=steps,
                         pretrain_kwargs=dict(batch_size=8, seq_len=64, log_every=0))


def make_stage1_checkpoint(path: str, llm_dir: str, seed: int = 0) -> str:
    """A stage-1 checkpoint as the runner writes it (state_dict + meta.cfg), student != teacher."""
    from granvit_mm.registry import MODELS
    cfg = Config.fromfile(STAGE1_TINY)
    cfg.model.head.llm_path = llm_dir
    cfg.model.backbone.init_cfg = None  # random weights, not `make tiny-siglip`'s
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a trained-looking student: biases, norms and the projector all non-trivial
        for p in list(model.backbone.parameters()) + list(model.projector.parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text)), path)
    return path


def build_stage1(path: str, llm_dir: str):
    """The stage-1 model of ``path``, loaded as tools/test.py would (eval mode)."""
    from granvit_mm.registry import MODELS
    cfg = Config.fromfile(STAGE1_TINY)
    cfg.model.head.llm_path = llm_dir
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True)['state_dict'])
    return model.eval()


def build_llava(llm_dir: str, encoder_dir: str, **kwargs):
    """``GranViTLLaVAModel`` as an XTuner config builds it (config dicts, from_pretrained)."""
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    from granvit_mm.xtuner.llava_model import GranViTLLaVAModel
    kwargs.setdefault('projector_path', osp.join(encoder_dir, 'projector'))
    kwargs.setdefault('freeze_llm', False)
    return GranViTLLaVAModel(
        llm=ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_dir),
        visual_encoder=ConfigDict(type=SiglipVisionModel.from_pretrained,
                                  pretrained_model_name_or_path=encoder_dir),
        **kwargs)


def sample_images(n: int = 3, seed: int = 0):
    """RGB uint8 images of several shapes (non-square ones exercise the padding)."""
    rng = np.random.default_rng(seed)
    shapes = [(50, 80), (64, 64), (90, 37)][:n]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def env():
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT, HF_HUB_OFFLINE='1',
                TRANSFORMERS_OFFLINE='1')


def save_export(out_dir: str, llm_dir: str, encoder_dir: str, seed: int = 1) -> str:
    """A transformers LLaVA export of a stage-2 model whose projector moved (``to_hf_llava`` +
    save_pretrained)."""
    from transformers import AutoTokenizer

    from granvit_mm.xtuner.hf_llava import to_hf_llava
    model = build_llava(llm_dir, encoder_dir).eval()
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.05)
    hf, processor = to_hf_llava(model, AutoTokenizer.from_pretrained(llm_dir))
    processor.tokenizer.padding_side = 'left'
    hf.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
