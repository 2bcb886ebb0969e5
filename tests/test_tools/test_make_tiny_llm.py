"""tools/misc/make_tiny_llm.py: a Qwen2 HF directory that from_pretrained loads, deterministic, idempotent."""
import argparse
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(data, out):
    cmd = [sys.executable, 'tools/misc/make_tiny_llm.py', '--data-root', data, '--out-dir', out,
           '--steps', '3', '--vocab-size', '300', '--max-records', '50']
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_make_tiny_llm(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from granvit_mm.toy.gran_synth import generate
    data = str(tmp_path / 'gran_synth')
    generate(data, num_train=20, num_val=2)
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    _run(data, a)
    _run(data, b)
    assert 'nothing to do' in _run(data, a)
    tok = AutoTokenizer.from_pretrained(a)
    assert type(tok).__name__ == 'Qwen2TokenizerFast' and tok.bos_token is None
    assert tok.eos_token == '<|endoftext|>'
    for special in ('<|im_start|>', '<|im_end|>', '<|endoftext|>'):
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    text = tok.apply_chat_template([dict(role='user', content='hi')], tokenize=False,
                                   add_generation_prompt=True)
    assert text == '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
    assert tok.decode(tok.encode('[0.125, 0.300, 0.482, 0.911]')) == '[0.125, 0.300, 0.482, 0.911]'
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    assert ma.config.model_type == 'qwen2' and ma.config.tie_word_embeddings
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)  # same seed, same weights


def test_vision_warm_up_trains_the_llm_on_a_fixed_start_encoder(tmp_path, monkeypatch):
    """The warm-up updates the LLM (and a throwaway projector) and leaves the start encoder as it is, unless
    asked; from any default scope (another library's test or script may have set one)."""
    from mmengine.registry import DefaultScope
    from transformers import AutoModelForCausalLM

    import granvit_mm.toy.llm_vision_warmup as warmup
    from granvit_mm.core.visual_tokens import granvit_token_kwargs
    from granvit_mm.registry import MODELS
    from granvit_mm.toy.gran_synth import generate
    from granvit_mm.toy.tiny_llm import region_chat_corpus, save_tiny_llm, toy_records
    data = str(tmp_path / 'gran_synth')
    generate(data, num_train=8, num_val=2)
    vit = str(tmp_path / 'vit.pth')
    torch.manual_seed(0)
    start = MODELS.build(dict(type='granvit.GranViT', arch='tiny', img_size=64, patch_size=8))
    torch.save(start.state_dict(), vit)
    seen = {}

    def spy(params, *args, **kwargs):
        seen['params'] = list(params)
        return fit(seen['params'], *args, **kwargs)

    fit = warmup.fit
    monkeypatch.setattr(warmup, 'fit', spy)
    import granvit_mm.datasets.pipeline as pipeline
    pipeline_of = pipeline.gran_pipeline

    def pipeline_spy(size, tasks, **kwargs):
        seen.setdefault('tasks', []).append(tasks)
        return pipeline_of(size, tasks, **kwargs)

    monkeypatch.setattr(pipeline, 'gran_pipeline', pipeline_spy)
    for train_vit, scope, tasks in ((False, 'mmpretrain', None), (True, 'granvit', dict(caption2bbox=2))):
        llm = save_tiny_llm(str(tmp_path / f'llm{train_vit}'), region_chat_corpus(toy_records(8)),
                            vocab_size=300)
        before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(llm).state_dict().items()}
        with DefaultScope.overwrite_default_scope(scope):
            losses = warmup.warm_up_llm_on_images(llm, data, steps=2, batch_size=2, vit_init=vit,
                                                  train_vit=train_vit, tasks=tasks, log_every=0)
        assert len(losses) == 2
        after = AutoModelForCausalLM.from_pretrained(llm).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), 'the saved LLM did not change'
        seen[train_vit] = sum(p.numel() for p in seen['params'])
    vit = MODELS.build(dict(type='granvit.GranViT', arch='tiny', img_size=64, patch_size=8,
                            **granvit_token_kwargs()))
    vit_size = sum(p.numel() for p in vit.parameters())
    assert seen[True] - seen[False] == vit_size  # the ViT is trained only when asked
    # stage 1's by default
    assert seen['tasks'] == [dict(global_caption=1, bbox2caption=4), dict(caption2bbox=2)]


def test_vision_tasks_argument():
    sys.path.insert(0, osp.join(ROOT, 'tools', 'misc'))
    try:
        from make_tiny_llm import parse_tasks
    finally:
        sys.path.remove(osp.join(ROOT, 'tools', 'misc'))
    assert parse_tasks('global_caption=1, bbox2caption=2.5') == dict(global_caption=1, bbox2caption=2.5)
    for bad in ('bbox2caption', 'bbox2caption=many', 'a=1=2'):
        with pytest.raises(argparse.ArgumentTypeError, match='NAME=AMOUNT'):
            parse_tasks(bad)
    for bad in ('bbox2captoin=4', 'bbox2caption=-1'):  # a task stage 1 does not know, a negative amount
        with pytest.raises(argparse.ArgumentTypeError):
            parse_tasks(bad)
