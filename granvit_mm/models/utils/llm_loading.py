"""Load the frozen causal LM and its tokenizer through transformers' ``from_pretrained``.

A real Qwen2.5 checkpoint and our locally built tiny Qwen2 take the same path. Missing paths fail at model
build time, before any data is read, with a message that says what to set.
"""
from typing import Optional, Union

import torch

_DTYPES = {'float32': torch.float32, 'fp32': torch.float32, 'bfloat16': torch.bfloat16,
           'bf16': torch.bfloat16,
           'float16': torch.float16, 'fp16': torch.float16}


def resolve_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    """'bf16'/'bfloat16'/... -> torch dtype; 'auto' -> bf16 when CUDA is there, else float32."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == 'auto':
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f'unknown llm_dtype {dtype!r}; use one of {sorted(_DTYPES)} or "auto"')
    return _DTYPES[dtype]


def load_llm(path: str, dtype=None, attn_implementation: str = 'sdpa'):
    """``AutoModelForCausalLM.from_pretrained`` with a mask-friendly attention implementation."""
    from transformers import AutoModelForCausalLM
    if attn_implementation not in ('sdpa', 'eager'):
        raise ValueError('packed sequences need a 4D attention mask: '
                         'attn_implementation must be sdpa or eager')
    return AutoModelForCausalLM.from_pretrained(
        path, torch_dtype=resolve_dtype(dtype) or torch.float32, attn_implementation=attn_implementation)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)
