"""A trained stage-2 model -> transformers' ``LlavaForConditionalGeneration`` + ``LlavaProcessor``.

XTuner's own HF export handles Llama LLMs with a CLIP tower only. This one takes any causal LM and the GranViT
``SiglipVisionModel``: the LLaVA config selects the stage-1 visual tokens (``vision_feature_layer`` +
``vision_feature_select_strategy='full'``, :mod:`granvit_mm.core.visual_tokens`), its projector is XTuner's
2-layer MLP (``linear_1``/``linear_2`` = ``model.0``/``model.2``, GELU), and its processor pads to a square
like stage 1 and writes the XTuner chat template, so ``processor(text=prompt, images=image)`` + ``generate``
give the answers the XTuner model gives (tested).

The image placeholder: XTuner uses id -200 in ``input_ids``; transformers' LLaVA needs a real token, so
``<image>`` is added to the tokenizer (and the embedding grows when the vocabulary has no spare row). That
token is never an answer in XTuner, so the saved generation config suppresses it.

Generation stops at the end of the turn: the generation config's eos ids hold the template's stop words, and
the exported tokenizer's ``eos_token`` is the template's end-of-turn token (``<|im_end|>`` for qwen_chat, as
Qwen2.5-Instruct's tokenizer has it), because harnesses such as lmms-eval's ``llava_hf`` pass
``eos_token_id=tokenizer.eos_token_id`` to ``generate`` over the generation config.
"""
from typing import Optional, Tuple

import torch

from granvit_mm.core.chat_format import DEFAULT_IMAGE_TOKEN, QWEN_CHAT, ChatTemplateEncoder
from granvit_mm.core.visual_tokens import HF_SELECT_STRATEGY, hf_llava_kwargs, num_visual_tokens

from .gran_llava_dataset import config_box_style

PROJECTOR_MAP = {'model.0': 'linear_1', 'model.2': 'linear_2'}


def llava_chat_template(template: Optional[dict] = None) -> str:
    """Jinja chat template writing conversations as the XTuner ``template`` dict does (qwen_chat default).

    User content is a string (``'<image>\\n' + question`` for the first turn) or a list of
    ``{'type': 'image'}`` / ``{'type': 'text', 'text': ...}`` items; the user turn already ends with the
    assistant header, as in XTuner, so ``add_generation_prompt`` adds nothing.
    """
    t = dict(QWEN_CHAT if template is None else template)
    user_before, user_after = t['INSTRUCTION'].replace('{round}', '1').split('{input}')
    sys_before, sys_after = t.get('SYSTEM', '{system}').split('{system}')
    answer_end = (t.get('SUFFIX') or '') + (t.get('SEP') or '')

    def lit(text: str) -> str:
        return "'" + text.replace('\\', '\\\\').replace("'", "\\'").replace('\n', '\\n') + "'"

    content = ("{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
               "{%- for item in message['content'] -%}{%- if item['type'] == 'image' -%}{{ " +
               lit(DEFAULT_IMAGE_TOKEN + '\n') + " }}{%- else -%}{{ item['text'] }}{%- endif -%}"
               "{%- endfor -%}{%- endif -%}")
    return ("{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}{{ " + lit(sys_before) + " }}" + content + "{{ " +
            lit(sys_after) + " }}"
            "{%- elif message['role'] == 'user' -%}{{ " + lit(user_before) + " }}" + content + "{{ " +
            lit(user_after) + " }}"
            "{%- else -%}" + content + "{{ " + lit(answer_end) + " }}{%- endif -%}"
            "{%- endfor -%}")


def add_image_token(tokenizer) -> int:
    """Id of ``<image>`` in ``tokenizer``, adding it as a special token when absent."""
    from transformers import AddedToken
    if DEFAULT_IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(DEFAULT_IMAGE_TOKEN, special=True, normalized=False)],
                             special_tokens=True)
    return tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN)


def end_of_turn_token(tokenizer, template: dict) -> Optional[str]:
    """The template's ``SUFFIX`` (what closes an answer) when it is one token of ``tokenizer``, else None."""
    suffix = template.get('SUFFIX') or ''
    ids = tokenizer.encode(suffix, add_special_tokens=False) if suffix else []
    return suffix if len(ids) == 1 else None


def merged_llm(model):
    """The stage-2 LLM as a plain ``PreTrainedModel`` (LoRA merged)."""
    llm = model.llm
    if hasattr(llm, 'merge_and_unload'):
        llm = llm.merge_and_unload()
    if getattr(llm, 'hf_quantizer', None) is not None:
        raise ValueError('a quantized (QLoRA) LLM cannot be exported: rebuild it without quantization_config '
                         'and load the checkpoint (tools/model_converters/xtuner_to_hf_llava.py does)')
    return llm


def to_hf_llava(model, tokenizer, template: Optional[dict] = None, system: str = ''
                ) -> Tuple[torch.nn.Module, object]:
    """(``LlavaForConditionalGeneration``, ``LlavaProcessor``) equivalent to a ``GranViTLLaVAModel``.

    ``tokenizer`` gains the ``<image>`` token. The returned modules share weights with ``model``.
    """
    from transformers import GenerationConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from .image_processor import GranViTImageProcessor
    proj = model.projector
    if proj.config.depth != 2:
        raise ValueError(f'transformers LLaVA has a 2-layer projector; this one has depth '
                         f'{proj.config.depth}')
    tower = model.visual_encoder
    if hasattr(tower, 'merge_and_unload'):
        tower = tower.merge_and_unload()
    llm = merged_llm(model)
    image_id = add_image_token(tokenizer)
    vocab = llm.get_input_embeddings().num_embeddings
    if image_id >= vocab:
        llm.resize_token_embeddings(image_id + 1, mean_resizing=False)
        with torch.no_grad():  # never read (LLaVA puts the image features there; the token is suppressed):
            for emb in (llm.get_input_embeddings(), llm.get_output_embeddings()):  # zeros, not a random draw,
                if emb is not None:  # so that an export is reproducible
                    emb.weight[vocab:] = 0
    vision_cfg = tower.config
    n_tokens = num_visual_tokens(vision_cfg.image_size, vision_cfg.patch_size)
    config = LlavaConfig(vision_config=vision_cfg.to_dict(), text_config=llm.config.to_dict(),
                         image_token_index=image_id, projector_hidden_act=proj.config.hidden_act,
                         multimodal_projector_bias=proj.config.bias, image_seq_length=n_tokens,
                         **hf_llava_kwargs(model.visual_select_layer))
    config.pad_token_id = tokenizer.pad_token_id
    from accelerate import init_empty_weights
    with init_empty_weights():
        hf = LlavaForConditionalGeneration(config)
    hf.vision_tower = tower
    hf.language_model = llm
    proj_state = {f'{PROJECTOR_MAP[k.rsplit(".", 1)[0]]}.{k.rsplit(".", 1)[1]}': v
                  for k, v in proj.state_dict().items()}
    hf.multi_modal_projector.load_state_dict(proj_state, strict=True, assign=True)
    hf.to(llm.dtype)
    hf.eval()

    chat = ChatTemplateEncoder(tokenizer, template or QWEN_CHAT, system)
    hf.generation_config = GenerationConfig(
        do_sample=False, num_beams=1, eos_token_id=chat.stop_token_ids(),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, suppress_tokens=[image_id])
    end_of_turn = end_of_turn_token(tokenizer, chat.template)
    if end_of_turn is not None:
        tokenizer.eos_token = end_of_turn
    GranViTImageProcessor.register_for_auto_class('AutoImageProcessor')
    processor = LlavaProcessor(image_processor=GranViTImageProcessor(size=vision_cfg.image_size),
                               tokenizer=tokenizer, patch_size=vision_cfg.patch_size,
                               vision_feature_select_strategy=HF_SELECT_STRATEGY,
                               chat_template=llava_chat_template(template), image_token=DEFAULT_IMAGE_TOKEN,
                               num_additional_image_tokens=0)
    return hf, processor


BOX_STYLE_KEY = 'granvit_box_style'  # in the export's config.json: the style its box answers are written in


def export_box_style(config) -> str:
    """The box style an export's answers use (``decimal3`` for exports written before it was recorded)."""
    return getattr(config, BOX_STYLE_KEY, None) or 'decimal3'


def save_hf_llava(model, cfg, out_dir: str, dtype: Optional[str] = None, **save_pretrained_kwargs) -> str:
    """Write the transformers LLaVA export of a built stage-2 model to ``out_dir``: the one export behind
    ``tools/model_converters/xtuner_to_hf_llava.py`` and ``xtuner convert pth_to_hf ... --save-format
    huggingface``. ``cfg`` is the stage-2 config (its ``tokenizer``, ``prompt_template`` and ``SYSTEM``);
    ``dtype`` (e.g. ``'float16'``) casts the weights, None keeps the config's."""
    import os

    from xtuner.registry import BUILDER
    template = cfg.get('prompt_template')
    model.llm.config.use_cache = True  # generation; training turns it off
    hf, processor = to_hf_llava(model, BUILDER.build(cfg.tokenizer), dict(template) if template else None,
                                cfg.get('SYSTEM', ''))
    if dtype is not None:
        hf.to(getattr(torch, dtype))
    setattr(hf.config, BOX_STYLE_KEY, config_box_style(cfg))
    processor.tokenizer.padding_side = 'left'  # batched generation
    os.makedirs(out_dir, exist_ok=True)
    hf.save_pretrained(out_dir, **save_pretrained_kwargs)
    processor.save_pretrained(out_dir)
    return out_dir
