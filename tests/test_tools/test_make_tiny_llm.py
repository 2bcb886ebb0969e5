"""tools/misc/make_tiny_llm.py: a Qwen2 HF directory that from_pretrained loads, deterministic, idempotent."""
import os
import os.path as osp
import subprocess
import sys

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
