"""A stage-2 (XTuner) checkpoint and its transformers LLaVA export, made in a minute for inference tests.

Built through the real paths (tests/test_xtuner/stage2_assets.py): a tiny Qwen2 with a few pretraining steps,
a stage-1 checkpoint exported by ``granvit_to_hf``, ``GranViTLLaVAModel`` with its projector moved away from
stage 1's (a "trained" stage 2), saved as ``xtuner train`` saves (``state_dict``), the shipped tiny stage-2
config pointed at these assets, and ``xtuner_to_hf_llava.py``'s export of the checkpoint.
"""
import os.path as osp
import sys
from typing import Optional

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(osp.dirname(HERE), 'test_xtuner'))
from stage2_assets import ROOT, build_llava, make_stage1_checkpoint  # noqa: E402

TINY_STAGE2_CONFIG = osp.join(ROOT, 'projects', 'granvit_xtuner', 'configs',
                              'granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py')


def stage2_config(path: str, llm_dir: str, encoder_dir: str) -> str:
    """The shipped tiny stage-2 config, pointed at the test's assets (the rest is the shipped text)."""
    with open(TINY_STAGE2_CONFIG, encoding='utf-8') as f:
        text = f.read()
    for old, new in (("llm_name_or_path = 'data/tiny_llm'", f'llm_name_or_path = {llm_dir!r}'),
                     ("visual_encoder_name_or_path = 'work_dirs/granvit_pretrain_tiny/hf_encoder'",
                      f'visual_encoder_name_or_path = {encoder_dir!r}')):
        assert old in text, old
        text = text.replace(old, new)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    return path


def make_stage2_assets(base: str, llm: Optional[str] = None, seed: int = 0) -> dict:
    """``dict(config, checkpoint, hf_dir, llm_path, encoder_dir)`` under ``base``; ``llm``: a tiny LLM that
    answers in the tasks' formats (default: made here, as stage1_assets.make_answering_llm makes it)."""
    from stage1_assets import make_answering_llm

    from granvit_mm.xtuner.encoder import export_encoder
    llm = llm or make_answering_llm(osp.join(base, 'tiny_llm'))
    stage1 = make_stage1_checkpoint(osp.join(base, 'stage1_iter_1.pth'), llm, seed=seed)
    encoder = osp.join(base, 'hf_encoder')
    export_encoder(stage1, encoder)
    model = build_llava(llm, encoder).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a "trained" stage 2: the projector moved away from stage 1's
        for p in model.projector.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ckpt = osp.join(base, 'iter_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=1)), ckpt)  # what xtuner train writes
    config = stage2_config(osp.join(base, 'stage2_tiny.py'), llm, encoder)
    from repo_tools import load_tool
    converter = load_tool('tools/model_converters/xtuner_to_hf_llava.py', 'granvit_xtuner_to_hf_llava')
    hf_dir = converter.convert(config, ckpt, osp.join(base, 'hf_llava'))
    return dict(config=config, checkpoint=ckpt, hf_dir=hf_dir, llm_path=llm, encoder_dir=encoder)
