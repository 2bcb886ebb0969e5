"""Every stage-2 config builds its model -- the real classes and loading paths -- from tiny stand-ins of the
same architectures (Qwen2 / Llama LLM, SigLIP tower), trains a step, and states the paper's recipe."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from stage2_assets import ROOT

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX

CONFIG_DIR = osp.join(ROOT, 'projects', 'granvit_xtuner', 'configs')
REAL = sorted(glob.glob(osp.join(CONFIG_DIR, 'granvit_siglip2_*_stage2.py')))  # stage 3: test_train_stage3.py
TINY = osp.join(CONFIG_DIR, 'granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py')


@pytest.fixture(scope='module')
def llama_dir(tmp_path_factory, tiny_llm_dir):
    """A tiny LlamaForCausalLM (LLaMA3's architecture) with the toy tokenizer, saved like a hub model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id))
    out = str(tmp_path_factory.mktemp('tiny_llama'))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_the_configs_are_there():
    names = {osp.basename(p) for p in REAL}
    for llm in ('qwen2.5_1.5b', 'qwen2.5_3b', 'qwen2.5_7b', 'llama3_8b'):
        assert any(llm in n and '_full_' in n for n in names), llm
        assert any(llm in n and ('_lora_' in n or '_qlora_' in n) for n in names), llm


@pytest.mark.parametrize('path', REAL, ids=osp.basename)
def test_real_config_recipe_and_build_with_standins(path, tiny_llm_dir, llama_dir, encoder_dir, stage1_ckpt):
    from xtuner.registry import BUILDER
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    llama = 'llama3' in name
    # ---- the recipe (paper where it says; docs/method.md)
    assert cfg.image_size == 512 and cfg.image_processor.size == 512
    assert cfg.model.freeze_visual_encoder is True and cfg.model.visual_select_layer == -1
    assert cfg.batch_size * cfg.accumulative_counts * 8 == 256 and cfg.max_epochs == 1
    assert cfg.train_cfg.max_epochs == 1
    assert cfg.lr == (1e-5 if '_full_' in name else 2e-4)
    assert cfg.optim_wrapper.type.__name__ == 'AmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.prompt_template['INSTRUCTION'].startswith('<|start_header_id|>' if llama else '<|im_start|>')
    dataset = cfg.train_dataloader.dataset
    assert dataset.type.__name__ == 'GranLLaVADataset' and dataset.image_size == 512
    assert dict(dataset.tasks) == dict(global_caption=1, caption2bbox=4)
    assert dataset.template_map_fn.template == cfg.prompt_template and cfg.val_ann_file
    assert any(h.type.__name__ == 'WeightsOnlyCheckpointHook' for h in cfg.custom_hooks)
    carries_projector = '1.5b' in name  # the stage-1 projector outputs Qwen2.5-1.5B's width
    assert bool(cfg.model.projector_path) == carries_projector
    quant = cfg.model.llm.pop('quantization_config', None)
    assert (quant is not None) == ('_qlora_' in name)
    if quant is not None:  # bitsandbytes 4-bit needs CUDA: checked here, built without it below
        assert quant.load_in_4bit and quant.bnb_4bit_quant_type == 'nf4'
        cfg.model.llm.pop('torch_dtype')
    # ---- the model, from stand-ins of the same architectures
    cfg.model.llm.pretrained_model_name_or_path = cfg.tokenizer.pretrained_model_name_or_path = \
        llama_dir if llama else tiny_llm_dir
    cfg.model.visual_encoder.pretrained_model_name_or_path = encoder_dir
    if carries_projector:
        cfg.model.projector_path = osp.join(encoder_dir, 'projector')
    model = BUILDER.build(cfg.model)
    llm = model.llm.get_base_model() if hasattr(model.llm, 'get_base_model') else model.llm
    assert type(llm).__name__ == ('LlamaForCausalLM' if llama else 'Qwen2ForCausalLM')
    assert not any(p.requires_grad for p in model.visual_encoder.parameters())
    trainable = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    if '_full_' in name:
        assert len(trainable) == len(list(model.llm.parameters()))
    else:
        assert trainable and all('lora_' in n for n in trainable)
    if carries_projector:
        stage1 = torch.load(stage1_ckpt, map_location='cpu', weights_only=True)['state_dict']
        assert torch.equal(model.projector.model[0].weight, stage1['projector.model.0.weight'])
    # ---- one training step
    model.train()
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 7, 8, 9]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 8, 9]])
    loss = model(dict(input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids, dtype=torch.bool),
                      pixel_values=torch.randn(1, 3, 64, 64)), mode='loss')['loss']
    loss.backward()
    assert torch.isfinite(loss) and model.projector.model[0].weight.grad.abs().sum() > 0
    BUILDER.build(cfg.tokenizer)  # the tokenizer config loads through the same path


def test_tiny_config_is_cpu_ready():
    cfg = Config.fromfile(TINY)
    assert cfg.optim_wrapper.type.__name__ == 'OptimWrapper'  # AmpOptimWrapper asserts an accelerator
    assert cfg.param_scheduler[0].end == cfg.warmup_iters > 0  # iterations, never a ratio rounding to 0
    assert cfg.model.llm.pretrained_model_name_or_path == 'data/tiny_llm'
    assert cfg.model.projector_path == 'work_dirs/granvit_pretrain_tiny/hf_encoder/projector'
    assert cfg.train_dataloader.dataset.image_size == 64 and cfg.train_dataloader.num_workers == 0
