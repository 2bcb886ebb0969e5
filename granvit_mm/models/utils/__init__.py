"""Helpers of the models: shared-prefix packing, the XTuner-compatible chat template, LLM loading."""
from .chat_template import DEFAULT_IMAGE_TOKEN, QWEN_CHAT, ChatTemplateEncoder  # noqa: F401
from .packing import (IGNORE_INDEX, IMAGE_TOKEN_INDEX, collate_packed, pack_turns,  # noqa: F401
                      shared_prefix_mask)
