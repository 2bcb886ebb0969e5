"""XTuner's LLaVA model with GranViT's visual tokens: stage 2 (ViT frozen; projector + LLM trained).

``GranViTLLaVAModel`` is XTuner 0.2.0's ``LLaVAModel`` with three differences, all needed for GranViT:

- the visual tokens are :func:`granvit_mm.core.visual_tokens.select_visual_tokens` of the tower's
  ``hidden_states`` -- every patch token. XTuner's forward drops token 0 (``[:, 1:]``, CLIP's CLS); GranViT
  has no CLS, so that would drop the top-left patch;
- the stage-1 projector is carried in (``projector_path``), loaded strictly: XTuner's ``pretrained_pth`` loads
  with ``strict=False`` and would start from a random projector without a word if the keys did not match;
- ``_prepare_for_flash_attn`` does not probe ``torch.cpu.is_bf16_supported`` (absent), so the model builds on
  CPU (tests, the tiny config); on GPUs XTuner's own logic runs unchanged.

The class name keeps ``LLaVAModel``: ``xtuner convert pth_to_hf`` recognises LLaVA models by that substring;
its ``--save-format huggingface`` calls :meth:`GranViTLLaVAModel.to_huggingface_llava`, our export.
"""
import os.path as osp
from typing import List, Optional, Sequence

import torch
from mmengine.logging import print_log
from xtuner.model import LLaVAModel
from xtuner.model.utils import prepare_inputs_labels_for_multimodal
from xtuner.utils.device import get_torch_device

from granvit_mm.core.chat_format import QWEN_CHAT, ChatTemplateEncoder
from granvit_mm.core.visual_tokens import DEFAULT_VISUAL_LAYER, check_layer, select_visual_tokens

from .encoder import VISUAL_LAYER_KEY, load_projector_weights


class GranViTLLaVAModel(LLaVAModel):
    """``LLaVAModel`` whose visual tokens follow the GranViT contract.

    Args (beyond XTuner's ``LLaVAModel``):
        projector_path: the stage-1 projector, from ``tools/model_converters/granvit_to_hf.py``'s
            ``<out>/projector`` directory or a stage-1 checkpoint; None starts from a random projector.
        visual_select_layer: HF ``hidden_states`` index of the tokens (default -1: the last block before the
            final norm, as stage 1). An exported tower records the layer it was trained with; a different one
            is an error.
        freeze_visual_encoder: True by default (the paper freezes GranViT in stage 2).
    """

    def __init__(self, llm, visual_encoder, projector_path: Optional[str] = None,
                 visual_select_layer: int = DEFAULT_VISUAL_LAYER, freeze_visual_encoder: bool = True,
                 **kwargs):
        check_layer(visual_select_layer)
        if projector_path and kwargs.get('pretrained_pth'):
            raise ValueError('give either projector_path (the stage-1 projector) or pretrained_pth (a '
                             'stage-2 checkpoint), not both: the later load would silently overwrite the '
                             'earlier')
        super().__init__(llm, visual_encoder, freeze_visual_encoder=freeze_visual_encoder,
                         visual_select_layer=visual_select_layer, **kwargs)
        trained_layer = getattr(self.visual_encoder.config, VISUAL_LAYER_KEY, None)
        if trained_layer is not None and trained_layer != visual_select_layer:
            raise ValueError(f'the vision tower was trained with visual tokens from layer {trained_layer} '
                             f'but visual_select_layer={visual_select_layer}')
        if projector_path:
            self.load_projector(projector_path)

    def load_projector(self, path: str) -> None:
        """Load projector weights strictly (shapes and names must match)."""
        if not osp.exists(path):
            raise FileNotFoundError(f'stage-1 projector not found at {path}: export it with '
                                    'tools/model_converters/granvit_to_hf.py (it writes <out>/projector)')
        if any(p.is_meta for p in self.projector.parameters()):
            return  # built on the meta device (xtuner pth_to_hf): the checkpoint fills it
        state = load_projector_weights(path)
        own = self.projector.state_dict()
        bad = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and
               v.shape != own[k].shape}
        if bad or set(state) != set(own):
            raise ValueError(f'projector at {path} does not fit this model (vision width -> LLM width): '
                             f'shape mismatches {bad}, missing {sorted(set(own) - set(state))}, '
                             f'unexpected {sorted(set(state) - set(own))}')
        self.projector.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        print_log(f'Loaded the stage-1 projector from {path}', 'current')

    def to_huggingface_llava(self, cfg, save_dir, fp32=False, save_pretrained_kwargs={}):
        """``xtuner convert pth_to_hf CONFIG PTH OUT --save-format huggingface``: our transformers LLaVA
        export (:func:`granvit_mm.xtuner.hf_llava.save_hf_llava`; XTuner's own accepts only Llama LLMs with a
        CLIP tower). As XTuner's formats: float16 unless ``--fp32``, which keeps the config's dtype."""
        from .hf_llava import save_hf_llava
        save_hf_llava(self, cfg, save_dir, dtype=None if fp32 else 'float16', **save_pretrained_kwargs)

    @staticmethod
    def _prepare_for_flash_attn(cfg, llm_cfg):
        device = get_torch_device()
        if not hasattr(device, 'is_bf16_supported'):  # torch.cpu: no flash-attention, no bf16 probe
            if getattr(cfg, 'attn_implementation', None) is None:
                cfg.attn_implementation = 'sdpa'
            return cfg, llm_cfg
        return LLaVAModel._prepare_for_flash_attn(cfg, llm_cfg)

    def visual_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> (B, N, C) visual tokens (all patches, before the projector)."""
        out = self.visual_encoder(pixel_values.to(self.visual_encoder.dtype), output_hidden_states=True)
        return select_visual_tokens(out.hidden_states, self.visual_select_layer)

    def forward(self, data, data_samples=None, mode='loss'):
        if self.is_first_iter:
            # as XTuner: move buffers / QuantState to the device once (QLoRA + ZeRO-3)
            self.to(data['input_ids'].device)
            self.is_first_iter = False
        if 'pixel_values' in data:
            data['pixel_values'] = self.projector(self.visual_tokens(data['pixel_values']))
            data = prepare_inputs_labels_for_multimodal(llm=self.llm, **data)
        if mode == 'loss':
            return self.compute_loss(data, data_samples)
        if mode == 'predict':
            return self.predict(data, data_samples)
        if mode == 'tensor':
            return self._forward(data, data_samples)
        raise NotImplementedError(mode)


@torch.no_grad()
def greedy_answers(model: LLaVAModel, tokenizer, pixel_values: torch.Tensor,
                   questions: Sequence[Sequence[str]], template: Optional[dict] = None, system: str = '',
                   max_new_tokens: int = 32) -> List[List[str]]:
    """Greedy answers of a (GranViT)LLaVAModel: one list per image, one answer per question.

    Each question is its own single-turn chat (``<image>\\n{question}`` in ``template``, XTuner's qwen_chat by
    default), encoded as XTuner's training encodes it; rows are left-padded so one ``generate`` serves the
    batch.
    """
    from transformers import GenerationConfig
    chat = ChatTemplateEncoder(tokenizer, template or QWEN_CHAT, system)
    was_training = model.training
    model.eval()
    device = next(model.projector.parameters()).device
    embeds_visual = model.projector(model.visual_tokens(pixel_values.to(device)))
    embed = model.llm.get_input_embeddings()
    rows, owners = [], []
    for i, qs in enumerate(questions):
        for q in qs:
            before = torch.tensor(chat.prefix_ids, dtype=torch.long, device=device)
            after = torch.tensor(chat.prompt_ids(q), dtype=torch.long, device=device)
            rows.append(torch.cat([embed(before), embeds_visual[i].to(embed.weight.dtype), embed(after)]))
            owners.append(i)
    answers: List[List[str]] = [[] for _ in questions]
    if not rows:
        return answers
    length = max(r.shape[0] for r in rows)
    pad = lambda r: torch.cat([r.new_zeros(length - r.shape[0], r.shape[1]), r])  # noqa: E731
    inputs = torch.stack([pad(r) for r in rows])
    mask = torch.stack([torch.arange(length, device=device) >= length - r.shape[0] for r in rows]).long()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                           eos_token_id=chat.stop_token_ids(), pad_token_id=pad_id,
                           bos_token_id=tokenizer.bos_token_id)
    use_cache = model.llm.config.use_cache
    model.llm.config.use_cache = True
    try:
        out = model.llm.generate(inputs_embeds=inputs, attention_mask=mask, generation_config=cfg)
    finally:
        model.llm.config.use_cache = use_cache
        model.train(was_training)
    for owner, text in zip(owners, tokenizer.batch_decode(out, skip_special_tokens=True)):
        answers[owner].append(text.strip())
    return answers


__all__ = ['GranViTLLaVAModel', 'greedy_answers']
