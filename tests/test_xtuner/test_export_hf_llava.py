"""tools/model_converters/xtuner_to_hf_llava.py: a stage-2 checkpoint -> transformers' LLaVA, same greedy
answers."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from stage2_assets import ROOT, build_llava, env, sample_images

from granvit_mm.core.prompts import caption2bbox_question, global_caption_question

TOOL = osp.join(ROOT, 'tools', 'model_converters', 'xtuner_to_hf_llava.py')
TINY_CFG = osp.join(ROOT, 'projects', 'granvit_xtuner', 'configs',
                    'granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py')
QUESTIONS = [global_caption_question(), caption2bbox_question('a small red circle')]


def tiny_config(tmp_path, llm_dir, encoder_dir) -> str:
    """The tiny stage-2 config, pointed at the test's assets (the text is the shipped file's)."""
    text = open(TINY_CFG).read()
    text = text.replace("llm_name_or_path = 'data/tiny_llm'", f'llm_name_or_path = {llm_dir!r}')
    text = text.replace("visual_encoder_name_or_path = 'work_dirs/granvit_pretrain_tiny/hf_encoder'",
                        f'visual_encoder_name_or_path = {encoder_dir!r}')
    path = tmp_path / 'stage2_tiny.py'
    path.write_text(text)
    return str(path)


def xtuner_answers(model, tokenizer, images, max_new_tokens=12):
    from granvit_mm.core.image_input import to_model_input
    from granvit_mm.xtuner.llava_model import greedy_answers
    pixels = torch.stack([torch.from_numpy(to_model_input(im, 64)[0]) for im in images])
    return greedy_answers(model, tokenizer, pixels, [QUESTIONS] * len(images), max_new_tokens=max_new_tokens)


def hf_answers(model, processor, images, max_new_tokens=12, batched=False):
    """The documented transformers usage: chat template + processor + generate."""
    messages = [[{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': q}]}]
                for q in QUESTIONS]
    prompts = [processor.apply_chat_template(m) for m in messages]
    out = []
    for im in images:
        if batched:
            inputs = processor(images=[im] * len(prompts), text=prompts, return_tensors='pt', padding=True)
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens)[:, inputs['input_ids'].shape[1]:]
            out.append([a.strip() for a in processor.batch_decode(ids, skip_special_tokens=True)])
            continue
        answers = []
        for prompt in prompts:
            inputs = processor(images=im, text=prompt, return_tensors='pt')
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens)[0, inputs['input_ids'].shape[1]:]
            answers.append(processor.decode(ids, skip_special_tokens=True).strip())
        out.append(answers)
    return out


def test_cli_export_answers_like_the_xtuner_model(tiny_llm_dir, encoder_dir, tmp_path):
    from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration
    model = build_llava(tiny_llm_dir, encoder_dir).eval()
    with torch.no_grad():  # a "trained" stage 2: the projector moved away from stage 1's
        for p in model.projector.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)  # what xtuner train writes
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    images = sample_images()
    expected = xtuner_answers(model, tokenizer, images)
    assert any(a for answers in expected for a in answers)

    out = tmp_path / 'hf_llava'
    proc = subprocess.run([sys.executable, TOOL, tiny_config(tmp_path, tiny_llm_dir, encoder_dir), str(ckpt),
                           str(out)], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hf = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert type(processor.image_processor).__name__ == 'GranViTImageProcessor'
    assert hf.config.vision_feature_layer == -1 and hf.config.vision_feature_select_strategy == 'full'
    assert hf.config.image_token_index == len(tokenizer)  # <image> added after the tiny vocabulary
    assert hf.generation_config.suppress_tokens == [hf.config.image_token_index]
    assert hf_answers(hf, processor, images) == expected
    assert hf_answers(hf, processor, images[:1], batched=True) == expected[:1]  # left-padded batch


def test_lora_is_merged_into_the_export(tiny_llm_dir, encoder_dir):
    from peft import LoraConfig
    from transformers import AutoTokenizer

    from granvit_mm.xtuner.hf_llava import to_hf_llava
    model = build_llava(tiny_llm_dir, encoder_dir, freeze_llm=True,
                        llm_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias='none',
                                            task_type='CAUSAL_LM'),
                        use_activation_checkpointing=False).eval()
    with torch.no_grad():  # trained adapters: B != 0, so LoRA changes the answers
        for name, p in model.llm.named_parameters():
            if 'lora_B' in name:
                p.normal_(0, 0.5)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    images = sample_images(2)
    expected = xtuner_answers(model, tokenizer, images)
    hf, processor = to_hf_llava(model, tokenizer)
    assert not any('lora' in k for k in hf.state_dict())
    assert hf_answers(hf, processor, images) == expected


def test_wrong_checkpoint_is_refused(tiny_llm_dir, encoder_dir, tmp_path):
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict={'foo.weight': torch.zeros(1)}), bad)
    proc = subprocess.run([sys.executable, TOOL, tiny_config(tmp_path, tiny_llm_dir, encoder_dir), str(bad),
                           str(tmp_path / 'out')], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and 'projector' in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.parametrize('name', ['qwen_chat', 'llama3_chat'])
def test_chat_template_writes_xtuner_prompts(name):
    from jinja2 import Template
    from xtuner.utils import PROMPT_TEMPLATE

    from granvit_mm.xtuner.hf_llava import llava_chat_template
    t = PROMPT_TEMPLATE[name]
    text = Template(llava_chat_template(dict(t))).render(messages=[
        {'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'Q1'}]},
        {'role': 'assistant', 'content': 'A1'}, {'role': 'user', 'content': 'Q2'}])
    expected = (t['INSTRUCTION'].format(input='<image>\nQ1') + 'A1' + t['SUFFIX'] + t.get('SEP', '')
                + t['INSTRUCTION'].format(input='Q2'))
    assert text == expected


def _export_files(out):
    """{file name: tensors (safetensors) / parsed JSON / bytes} of an export directory."""
    import json

    from safetensors.torch import load_file
    files = {}
    for path in sorted(out.iterdir()):
        if path.suffix == '.safetensors':
            files[path.name] = load_file(str(path))
        elif path.suffix == '.json':
            files[path.name] = json.loads(path.read_text())
        else:
            files[path.name] = path.read_bytes()
    return files


def test_xtuner_convert_pth_to_hf_gives_our_export(tiny_llm_dir, encoder_dir, tmp_path):
    """`xtuner convert pth_to_hf CONFIG PTH OUT --save-format huggingface` (GranViTLLaVAModel's own
    to_huggingface_llava) writes what tools/model_converters/xtuner_to_hf_llava.py writes."""
    model = build_llava(tiny_llm_dir, encoder_dir)
    with torch.no_grad():
        for p in list(model.projector.parameters()) + list(model.llm.parameters())[:3]:
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    config = tiny_config(tmp_path, tiny_llm_dir, encoder_dir)
    ours, theirs = tmp_path / 'ours', tmp_path / 'xtuner'
    for cmd in ([sys.executable, TOOL, config, str(ckpt), str(ours)],
                [sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf', config, str(ckpt),
                 str(theirs), '--save-format', 'huggingface', '--fp32', '--safe-serialization']):
        proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _export_files(theirs), _export_files(ours)
    assert got.pop('xtuner_config.py') == open(config, 'rb').read()  # XTuner copies the config along
    assert sorted(got) == sorted(want) and 'model.safetensors' in want
    for name, content in want.items():
        if name.endswith('.safetensors'):
            assert sorted(got[name]) == sorted(content)
            for key, tensor in content.items():
                assert torch.equal(got[name][key], tensor), key
        else:
            assert got[name] == content, name
    trained = {k: v for k, v in model.state_dict().items() if k.startswith('projector.')}
    assert torch.equal(want['model.safetensors']['multi_modal_projector.linear_1.weight'],
                       trained['projector.model.0.weight'])


def test_image_token_is_one_special_unnormalised_token(tiny_llm_dir):
    """``<image>`` is added once, as a special token (answers decoded with skip_special_tokens never show it)
    that the tokenizer finds inside text exactly as written."""
    from transformers import AutoTokenizer

    from granvit_mm.xtuner.hf_llava import add_image_token
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    image_id = add_image_token(tokenizer)
    assert add_image_token(tokenizer) == image_id and tokenizer.convert_ids_to_tokens(image_id) == '<image>'
    assert tokenizer.added_tokens_decoder[image_id].special
    assert not tokenizer.added_tokens_decoder[image_id].normalized
    ids = tokenizer('a <image>\nred', add_special_tokens=False)['input_ids']
    assert ids.count(image_id) == 1
    assert '<image>' not in tokenizer.decode(ids, skip_special_tokens=True)


def test_quantized_llm_is_refused():
    from types import SimpleNamespace

    from granvit_mm.xtuner.hf_llava import merged_llm
    with pytest.raises(ValueError, match=r'quantized \(QLoRA\) LLM cannot be exported: rebuild it '
                       r'without quantization_config and load the checkpoint '
                       r'\(tools/model_converters/xtuner_to_hf_llava'):
        merged_llm(SimpleNamespace(llm=SimpleNamespace(hf_quantizer=object())))
    plain = SimpleNamespace(hf_quantizer=None)
    assert merged_llm(SimpleNamespace(llm=plain)) is plain


def test_save_hf_llava_writes_configs_that_answer_like_the_xtuner_model(tiny_llm_dir, encoder_dir, tmp_path):
    """``save_hf_llava`` in this process (the CLI tests run it in a subprocess): what it writes is reloaded
    and each saved setting checked (vision tokens, projector, the <image> row, greedy generation that stops at
    the end of the turn and never emits <image>, a left-padding processor), then the answers compared."""
    from mmengine.config import Config
    from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration

    from granvit_mm.core.chat_format import QWEN_CHAT, ChatTemplateEncoder
    from granvit_mm.core.visual_tokens import num_visual_tokens
    from granvit_mm.xtuner.hf_llava import llava_chat_template, save_hf_llava
    model = build_llava(tiny_llm_dir, encoder_dir).eval()
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    vocab = model.llm.get_input_embeddings().num_embeddings
    assert len(tokenizer) == vocab  # no spare row: the export must grow the embedding by one
    images = sample_images(2)
    expected = xtuner_answers(model, tokenizer, images)
    cfg = Config.fromfile(tiny_config(tmp_path, tiny_llm_dir, encoder_dir))
    cfg.prompt_template = dict(QWEN_CHAT, SEP='\n\n')  # the config's template, not the default, is written
    model.llm.config.use_cache = False  # as training leaves it
    (tmp_path / 'hf').mkdir()
    # an existing folder is written into; kwargs reach save_pretrained
    out = save_hf_llava(model, cfg, str(tmp_path / 'hf'), max_shard_size='1MB')
    assert (tmp_path / 'hf' / 'model.safetensors.index.json').is_file()
    hf = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)

    c, vc = hf.config, hf.config.vision_config
    assert c.image_token_index == vocab
    assert c.image_seq_length == num_visual_tokens(vc.image_size, vc.patch_size)
    assert c.projector_hidden_act == model.projector.config.hidden_act and c.multimodal_projector_bias
    assert c.pad_token_id == tokenizer.pad_token_id is not None
    assert c.vision_feature_select_strategy == 'full'
    for emb in (hf.get_input_embeddings(), hf.get_output_embeddings()):
        assert emb.weight.shape[0] == vocab + 1 and not emb.weight[vocab:].any()  # one zero row, reproducible
    g = hf.generation_config
    assert g.do_sample is False and g.num_beams == 1 and g.suppress_tokens == [vocab]
    assert g.eos_token_id == ChatTemplateEncoder(tokenizer, QWEN_CHAT).stop_token_ids()
    assert g.pad_token_id == tokenizer.pad_token_id and g.bos_token_id == tokenizer.bos_token_id
    t = processor.tokenizer
    assert t.eos_token == QWEN_CHAT['SUFFIX'] == '<|im_end|>' and t.padding_side == 'left'
    assert processor.image_token == '<image>' and processor.num_additional_image_tokens == 0
    assert processor.vision_feature_select_strategy == 'full' and processor.patch_size == vc.patch_size
    assert processor.chat_template == llava_chat_template(cfg.prompt_template)
    assert c.text_config.use_cache is True  # generation
    assert hf_answers(hf, processor, images) == expected
    half = save_hf_llava(model, cfg, str(tmp_path / 'bf16'), dtype='bfloat16')
    assert LlavaForConditionalGeneration.from_pretrained(half, torch_dtype='auto').dtype == torch.bfloat16
    assert c.granvit_box_style == 'decimal3'


def test_the_export_records_its_box_style_and_the_loader_parses_with_it(tiny_llm_dir, encoder_dir, tmp_path):
    """A model trained with int999 boxes answers ``[125, 300, 482, 911]``: its export says so, and the
    inference API reads the answers with that style (an export written before the key existed: decimal3)."""
    import json

    from mmengine.config import Config

    from granvit_mm.apis.llava_chat_models import load_hf_llava
    from granvit_mm.xtuner.hf_llava import BOX_STYLE_KEY, save_hf_llava
    cfg = Config.fromfile(tiny_config(tmp_path, tiny_llm_dir, encoder_dir))
    cfg.train_dataloader.dataset.box_style = 'int999'
    out = save_hf_llava(build_llava(tiny_llm_dir, encoder_dir).eval(), cfg, str(tmp_path / 'hf'))
    with open(tmp_path / 'hf' / 'config.json') as f:
        assert json.load(f)[BOX_STYLE_KEY] == 'int999'
    assert load_hf_llava(out).box_style == 'int999'
    assert load_hf_llava(out, box_style='decimal3').box_style == 'decimal3'  # the caller's word wins
    with open(tmp_path / 'hf' / 'config.json') as f:
        old = json.load(f)
    old.pop(BOX_STYLE_KEY)
    with open(tmp_path / 'hf' / 'config.json', 'w') as f:
        json.dump(old, f)
    assert load_hf_llava(out).box_style == 'decimal3'


def test_chat_template_system_turn_and_literal_text():
    """A system turn, ``{round}``, quotes, backslashes and newlines in the template, and templates without
    ``SYSTEM`` or ``SUFFIX`` are written as XTuner's template strings say."""
    from jinja2 import Template

    from granvit_mm.xtuner.hf_llava import llava_chat_template
    t = dict(SYSTEM="<sys '\\'>\n{system}\n", INSTRUCTION="[round {round}] it's \\ {input}\nA:",
             SUFFIX='</s>', SEP='\n')
    image_q1 = [{'type': 'image'}, {'type': 'text', 'text': 'Q1'}]
    msgs = [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': image_q1},
            {'role': 'assistant', 'content': 'A1'}]
    assert Template(llava_chat_template(t)).render(messages=msgs) == (
        t['SYSTEM'].format(system='S') + t['INSTRUCTION'].format(round=1, input='<image>\nQ1') + 'A1</s>\n')
    bare = dict(INSTRUCTION='U: {input}\nA: ')
    assert Template(llava_chat_template(bare)).render(messages=msgs) == 'SU: <image>\nQ1\nA: A1'


def test_end_of_turn_token_is_a_one_token_suffix(tiny_llm_dir):
    """The template's SUFFIX becomes the tokenizer's eos only when it is a single token."""
    from transformers import AutoTokenizer

    from granvit_mm.core.chat_format import QWEN_CHAT
    from granvit_mm.xtuner.hf_llava import end_of_turn_token
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    assert end_of_turn_token(tokenizer, QWEN_CHAT) == '<|im_end|>'
    assert len(tokenizer.encode('red circle', add_special_tokens=False)) > 1
    assert end_of_turn_token(tokenizer, dict(QWEN_CHAT, SUFFIX='red circle')) is None
    assert end_of_turn_token(tokenizer, dict(QWEN_CHAT, SUFFIX=None)) is None
    assert end_of_turn_token(tokenizer, {}) is None


def test_projector_of_another_depth_is_refused():
    from types import SimpleNamespace

    from granvit_mm.xtuner.hf_llava import to_hf_llava
    model = SimpleNamespace(projector=SimpleNamespace(config=SimpleNamespace(depth=3)))
    with pytest.raises(ValueError, match='2-layer projector; this one has depth 3'):
        to_hf_llava(model, tokenizer=None)


def llama3_style_tokenizer(llm_dir):
    """The tiny tokenizer made like Llama 3's where the export depends on it: a BOS on every encoding (a
    post-processor that adds it), the llama3_chat template's special tokens, and no pad token."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    tokenizer.add_special_tokens(dict(bos_token='<|begin_of_text|>', additional_special_tokens=[
        '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>']))
    bos = ('<|begin_of_text|>', tokenizer.bos_token_id)
    tokenizer._tokenizer.post_processor = TemplateProcessing(single='<|begin_of_text|> $A',
                                                             pair='<|begin_of_text|> $A $B',
                                                             special_tokens=[bos])
    tokenizer.pad_token = None
    assert tokenizer.encode('<|eot_id|>') == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(
        '<|eot_id|>')] and tokenizer.pad_token_id is None
    return tokenizer


def test_export_follows_a_llama3_style_tokenizer_and_template(tiny_llm_dir, encoder_dir):
    """Another LLM family's tokenizer and template (xtuner's llama3_chat): generation stops at that
    template's stop words, the end-of-turn token found without the tokenizer's BOS becomes its eos, the
    tokenizer's BOS is kept, and with no pad token generation pads with eos."""
    from xtuner.utils import PROMPT_TEMPLATE

    from granvit_mm.core.chat_format import QWEN_CHAT, ChatTemplateEncoder
    from granvit_mm.xtuner.hf_llava import end_of_turn_token, llava_chat_template, to_hf_llava
    template = dict(PROMPT_TEMPLATE.llama3_chat)
    tokenizer = llama3_style_tokenizer(tiny_llm_dir)
    eot, eos = tokenizer.convert_tokens_to_ids('<|eot_id|>'), tokenizer.eos_token_id
    assert end_of_turn_token(tokenizer, template) == '<|eot_id|>'
    stop_ids = ChatTemplateEncoder(tokenizer, template).stop_token_ids()
    assert stop_ids == [eos, eot] != ChatTemplateEncoder(tokenizer, QWEN_CHAT).stop_token_ids()
    hf, processor = to_hf_llava(build_llava(tiny_llm_dir, encoder_dir).eval(), tokenizer, template)
    g = hf.generation_config
    assert g.eos_token_id == stop_ids
    assert g.bos_token_id == tokenizer.bos_token_id is not None
    assert g.pad_token_id == eos and hf.config.pad_token_id is None
    assert processor.tokenizer.eos_token == '<|eot_id|>' and processor.tokenizer.eos_token_id == eot
    assert processor.chat_template == llava_chat_template(template)
    assert end_of_turn_token(tokenizer, dict(template, SUFFIX='<|begin_of_text|><|eot_id|>')) is None
    tokenizer.pad_token = '<|begin_of_text|>'  # a pad token of its own, not eos: generation pads with it
    hf, _ = to_hf_llava(build_llava(tiny_llm_dir, encoder_dir).eval(), tokenizer, template)
    assert hf.generation_config.pad_token_id == tokenizer.pad_token_id != eos


def test_export_keeps_the_projector_activation_bias_and_the_llm_dtype(tiny_llm_dir, encoder_dir):
    """A projector with another activation (SiLU) and no biases (XTuner's ``ProjectorConfig`` allows both;
    ``to_hf_llava`` takes any model with such a projector), and an LLM in bfloat16: the LLaVA projector
    computes what XTuner's does, and the whole export is in the LLM's dtype."""
    from transformers import AutoTokenizer
    from xtuner.model.modules import ProjectorConfig, ProjectorModel

    from granvit_mm.xtuner.hf_llava import to_hf_llava
    torch.manual_seed(0)
    stage1 = ProjectorModel.from_pretrained(osp.join(encoder_dir, 'projector'))
    c = stage1.config
    projector = ProjectorModel(ProjectorConfig(visual_hidden_size=c.visual_hidden_size,
                                               llm_hidden_size=c.llm_hidden_size, depth=2, hidden_act='silu',
                                               bias=False))
    with torch.no_grad():
        for p in projector.parameters():
            p.normal_(0, p.shape[-1] ** -0.5)  # activations of about 1, where SiLU and GELU differ
    model = build_llava(tiny_llm_dir, encoder_dir).eval()
    model.projector = projector.eval()  # XTuner's LLaVAModel builds the default (GELU, biases)
    model.llm.to(torch.bfloat16)
    x = torch.randn(3, c.visual_hidden_size)
    with torch.no_grad():
        expected = model.projector(x).float()
    hf, _ = to_hf_llava(model, AutoTokenizer.from_pretrained(tiny_llm_dir))
    assert hf.config.projector_hidden_act == 'silu' and hf.config.multimodal_projector_bias is False
    assert {p.dtype for p in hf.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        got = hf.multi_modal_projector(x.bfloat16()).float()
    scale = expected.abs().max()
    assert (got - expected).abs().max() < 0.02 * scale  # bfloat16 rounding: 0.006
    with torch.no_grad():
        gelu = torch.nn.functional.gelu(x @ projector.model[0].weight.T) @ projector.model[2].weight.T
    assert (gelu - expected).abs().max() > 0.07 * scale  # GELU in place of SiLU: 0.14


def test_visual_encoder_lora_is_merged_into_the_export(tiny_llm_dir, encoder_dir):
    """A visual encoder tuned with LoRA (XTuner's ``visual_encoder_lora``): the export's vision tower is the
    plain SiglipVisionModel with the adapters merged, and answers as the XTuner model does."""
    from peft import LoraConfig
    from transformers import AutoTokenizer, SiglipVisionModel

    from granvit_mm.xtuner.hf_llava import to_hf_llava
    model = build_llava(tiny_llm_dir, encoder_dir,
                        visual_encoder_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias='none',
                                                       target_modules=['q_proj', 'v_proj', 'fc1']),
                        use_activation_checkpointing=False).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # trained adapters: B != 0, so LoRA changes the visual tokens
        for name, p in model.visual_encoder.named_parameters():
            if 'lora_B' in name:
                p.normal_(0, 0.5)
    pixels = torch.randn(1, 3, model.visual_encoder.config.image_size, model.visual_encoder.config.image_size)
    with torch.no_grad():
        expected = model.visual_encoder(pixels, output_hidden_states=True).hidden_states[-1]
        with model.visual_encoder.disable_adapter():
            plain = model.visual_encoder(pixels, output_hidden_states=True).hidden_states[-1]
    assert not torch.allclose(expected, plain, atol=1e-3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    images = sample_images(2)
    answers = xtuner_answers(model, tokenizer, images)
    hf, processor = to_hf_llava(model, tokenizer)
    assert type(hf.vision_tower) is SiglipVisionModel
    assert not any('lora' in k or 'base_layer' in k for k in hf.state_dict())
    with torch.no_grad():
        got = hf.vision_tower(pixels, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert hf_answers(hf, processor, images) == answers


def test_save_hf_llava_without_a_prompt_template_writes_qwen_chat(tiny_llm_dir, encoder_dir, tmp_path):
    """A config with no ``prompt_template``: the export uses qwen_chat, the default of every part."""
    from mmengine.config import Config
    from transformers import AutoProcessor, AutoTokenizer, GenerationConfig

    from granvit_mm.core.chat_format import QWEN_CHAT, ChatTemplateEncoder
    from granvit_mm.xtuner.hf_llava import llava_chat_template, save_hf_llava
    cfg = Config.fromfile(tiny_config(tmp_path, tiny_llm_dir, encoder_dir))
    cfg.pop('prompt_template')
    assert cfg.get('prompt_template') is None
    out = save_hf_llava(build_llava(tiny_llm_dir, encoder_dir).eval(), cfg, str(tmp_path / 'hf'))
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert processor.chat_template == llava_chat_template(QWEN_CHAT)
    assert processor.tokenizer.eos_token == '<|im_end|>'
    stop_ids = ChatTemplateEncoder(AutoTokenizer.from_pretrained(tiny_llm_dir), QWEN_CHAT).stop_token_ids()
    assert GenerationConfig.from_pretrained(out).eos_token_id == stop_ids
