"""Helpers of the stage-1 model: shared-prefix packing and LLM loading (contracts live in granvit_mm.core)."""
from .llm_loading import load_llm, load_tokenizer, resolve_dtype  # noqa: F401
from .packing import PAD_SEGMENT, collate_packed, pack_turns, shared_prefix_mask  # noqa: F401
