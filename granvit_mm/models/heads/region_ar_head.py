"""Region-autoregressive head: a frozen causal LM reads the visual tokens and the region questions.

The ViT learns region perception only through this head's loss (next-token cross-entropy on the answers),
with the LLM frozen (docs/method.md, stage 1). All turns of one image share one forward of the image tokens
(:mod:`granvit_mm.models.utils.packing`).
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX, ChatTemplateEncoder
from granvit_mm.core.paths import check_path
from granvit_mm.registry import MODELS

from ..utils.llm_loading import load_llm, load_tokenizer
from ..utils.packing import collate_packed, pack_turns, shared_prefix_mask

__all__ = ['RegionARHead']

LLM_HINT = ('Set `llm_path` in the config or pass `--cfg-options model.head.llm_path=/path/to/Qwen2.5-1.5B` '
            '(a Hugging Face model directory). For the tiny config, build the tiny LLM first: '
            '`python tools/misc/make_tiny_llm.py --data-root data/gran_synth --out-dir data/tiny_llm`.')


@MODELS.register_module()
class RegionARHead(BaseModule):
    """Frozen ``AutoModelForCausalLM`` + tokenizer + XTuner-style chat template.

    Args:
        llm_path: Hugging Face directory of the causal LM (Qwen2.5-1.5B in the paper recipe).
        tokenizer_path: defaults to ``llm_path``.
        template: an XTuner prompt template dict (``PROMPT_TEMPLATE.qwen_chat`` layout); default qwen_chat.
        system: system prompt ('' as in XTuner's LLaVA configs).
        llm_dtype: None/'float32', 'bf16', or 'auto' (bf16 when CUDA is there).
        attn_implementation: 'sdpa' or 'eager' (both take the packed 4D mask; flash-attention does not).
        gradient_checkpointing: recompute LLM layers in backward (activations, not weights, dominate).
        max_length: packed sequences drop trailing turns beyond this many tokens (0: no limit).
        max_new_tokens: default generation length for ``predict``.
        save_llm: keep the frozen LLM's weights in ``state_dict`` (off: checkpoints hold only what trains;
            loading tolerates their absence because the LLM is rebuilt from ``llm_path``).
        path_hint: what to tell the user when ``llm_path`` is missing.
    """

    def __init__(self, llm_path: str, tokenizer_path: Optional[str] = None, template: Optional[Dict] = None,
                 system: str = '', llm_dtype=None, attn_implementation: str = 'sdpa',
                 gradient_checkpointing: bool = False, max_length: int = 0, max_new_tokens: int = 32,
                 save_llm: bool = False, path_hint: str = LLM_HINT, init_cfg=None):
        super().__init__(init_cfg)
        llm_path = check_path(llm_path, 'The LLM (model.head.llm_path)', path_hint)
        self.llm = load_llm(llm_path, llm_dtype, attn_implementation)
        self.llm.requires_grad_(False)
        self.llm.eval()
        self.llm.config.use_cache = False
        self.tokenizer = load_tokenizer(tokenizer_path or llm_path)
        self.chat = ChatTemplateEncoder(self.tokenizer, template, system)
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.gradient_checkpointing = gradient_checkpointing
        if gradient_checkpointing:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        self.save_llm = save_llm
        if not save_llm:
            self._register_state_dict_hook(_drop_llm_state)
            self._register_load_state_dict_pre_hook(_fill_llm_state, with_module=True)

    # ----------------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.llm.config.hidden_size

    def init_weights(self) -> None:
        """Nothing to initialise: the LLM is pretrained (and must not be re-initialised by MMEngine)."""
        self._is_init = True

    def train(self, mode: bool = True):
        """Keep the frozen LLM in eval mode; let HF's layer checkpointing see 'training' when asked for it."""
        super().train(mode)
        self.llm.eval()
        if self.gradient_checkpointing and mode:
            # transformers only checkpoints when the decoder container is in training mode; its children
            # (dropout etc.) stay in eval, so outputs are those of eval mode.
            self.llm.get_decoder().training = True
        return self

    # ---------------------------------------------------------------------------------------- sequences
    def build_batch(self, tasks: Sequence[Sequence[dict]], num_visual_tokens: int) -> Dict[str, torch.Tensor]:
        """Pack each image's turns after its shared prefix; right-pad the batch."""
        seqs = []
        for image_tasks in tasks:
            turns = [self.chat.turn(t['question'], t['answer']) for t in image_tasks]
            seqs.append(pack_turns(self.chat.prefix_ids, num_visual_tokens, turns, self.max_length))
        return collate_packed(seqs, self.pad_id)

    def embed(self, visual_embeds: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings with the (B, N, C) visual tokens written at the image placeholders."""
        is_image = input_ids == IMAGE_TOKEN_INDEX
        ids = input_ids.masked_fill(is_image, self.pad_id)
        embeds = self.llm.get_input_embeddings()(ids)
        visual = visual_embeds.to(embeds.dtype).reshape(-1, embeds.shape[-1])
        if int(is_image.sum()) != visual.shape[0]:
            raise ValueError(f'{int(is_image.sum())} image placeholders but {visual.shape[0]} visual tokens')
        return embeds.masked_scatter(is_image[..., None], visual)

    def token_losses(self, visual_embeds: torch.Tensor,
                     batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Per-answer-token CE of packed sequences.

        Returns ``loss`` and ``correct`` over the answer tokens (T,), and ``valid`` (B, L-1) saying which
        shifted positions they are. Only those positions go through ``lm_head``: at Qwen's 151k vocabulary
        the full (B, L, V) logits would dwarf everything else.
        """
        device = visual_embeds.device
        batch = {k: v.to(device) for k, v in batch.items()}
        embeds = self.embed(visual_embeds, batch['input_ids'])
        mask = shared_prefix_mask(batch['segment_ids'], embeds.dtype)
        hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask,
                                        position_ids=batch['position_ids'], use_cache=False)[0]
        target = batch['labels'][:, 1:]
        valid = target != IGNORE_INDEX
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][valid]).float()
        target = target[valid]
        loss = F.cross_entropy(logits, target, reduction='none')
        return dict(loss=loss, correct=logits.argmax(-1) == target, valid=valid)

    # ------------------------------------------------------------------------------------------ API
    def loss(self, visual_embeds: torch.Tensor, data_samples: Sequence) -> Dict[str, torch.Tensor]:
        """Mean CE over all answer tokens of the batch (as XTuner's token-averaged LLaVA loss)."""
        batch = self.build_batch([ds.tasks for ds in data_samples], visual_embeds.shape[1])
        out = self.token_losses(visual_embeds, batch)
        if out['loss'].numel() == 0:
            zero = visual_embeds.sum() * 0.0
            return dict(loss_caption=zero, acc_caption=zero.detach())
        return dict(loss_caption=out['loss'].mean(), acc_caption=out['correct'].float().mean().detach())

    @torch.no_grad()
    def generate(self, visual_embeds: torch.Tensor, questions: Sequence[Sequence[str]],
                 max_new_tokens: Optional[int] = None) -> List[List[str]]:
        """Greedy answers, one list per image, one answer per question (each asked as its own chat)."""
        from transformers import GenerationConfig
        rows, owners = [], []
        n = visual_embeds.shape[1]
        for i, qs in enumerate(questions):
            for q in qs:
                rows.append(self.chat.prefix_ids + [IMAGE_TOKEN_INDEX] * n + self.chat.prompt_ids(q))
                owners.append(i)
        answers: List[List[str]] = [[] for _ in questions]
        if not rows:
            return answers
        length = max(len(r) for r in rows)
        device = visual_embeds.device
        ids = torch.tensor([[self.pad_id] * (length - len(r)) + r for r in rows], device=device)  # left pad
        attn = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows], device=device)
        embeds = self.embed(visual_embeds[owners], ids)
        cfg = GenerationConfig(max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False,
                               num_beams=1, eos_token_id=self.chat.stop_token_ids(), pad_token_id=self.pad_id,
                               bos_token_id=self.tokenizer.bos_token_id)
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=attn, generation_config=cfg,
                                use_cache=True)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        for owner, text in zip(owners, texts):
            answers[owner].append(text.strip())
        return answers

    def predict(self, visual_embeds: torch.Tensor, data_samples: Sequence,
                max_new_tokens: Optional[int] = None) -> List[List[str]]:
        return self.generate(visual_embeds, [[t['question'] for t in ds.tasks] for ds in data_samples],
                             max_new_tokens)


def _drop_llm_state(module, state_dict, prefix, local_metadata):
    """state_dict hook: leave the frozen LLM out of checkpoints."""
    for key in [k for k in state_dict if k.startswith(prefix + 'llm.')]:
        del state_dict[key]
    return state_dict


def _fill_llm_state(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                    error_msgs):
    """load pre-hook: a checkpoint without LLM weights keeps the LLM loaded from ``llm_path``."""
    for name, value in module.llm.state_dict(keep_vars=True).items():
        key = f'{prefix}llm.{name}'
        if key not in state_dict:
            state_dict[key] = value.detach()
