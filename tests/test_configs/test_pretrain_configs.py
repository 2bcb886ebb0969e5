"""Stage-1 configs: they parse and dump, carry the paper's numbers, stop on missing paths with instructions,
and build the paper model when given stand-ins of the right architecture."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from granvit_mm.registry import MODELS
from granvit_mm.toy.tiny_llm import save_tiny_llm

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER = osp.join(ROOT, 'configs', 'granvit_pretrain.py')
TINY = osp.join(ROOT, 'configs', 'granvit_pretrain_tiny.py')
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


@pytest.fixture(scope='module')
def llm_dir(tmp_path_factory):
    return save_tiny_llm(str(tmp_path_factory.mktemp('tiny_llm')), vocab_size=400)


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'configs', 'granvit_pretrain*.py')) +
                                        glob.glob(osp.join(ROOT, 'configs', 'granvit', '*.py'))))
def test_config_parses_and_dumps(path, tmp_path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'granvit'
    assert cfg.model.type == 'GranViTPretrainer'
    assert any(h['type'] == 'granvit.WeightsOnlyCheckpointHook' for h in cfg.custom_hooks)
    cfg.dump(str(tmp_path / 'dumped.py'))
    assert Config.fromfile(str(tmp_path / 'dumped.py')).model == cfg.model


def test_paper_recipe_numbers():
    cfg = Config.fromfile(PAPER)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 1e-5
    assert cfg.train_dataloader.batch_size * 8 == 256 and cfg.auto_scale_lr.base_batch_size == 256
    assert cfg.train_cfg.max_epochs == 1
    bb = cfg.model.backbone
    assert (bb.arch, bb.img_size, bb.patch_size, bb.with_cp) == ('l', 512, 16, True)
    assert bb.init_cfg.checkpoint == cfg.vit_checkpoint and cfg.model.head.llm_path == cfg.llm_path
    assert cfg.model.head.gradient_checkpointing and cfg.model.distill_loss.loss_weight == 1.0
    assert cfg.train_dataloader.dataset.data_root == cfg.data_root
    assert cfg.train_dataloader.dataset.ann_file == cfg.train_ann_files
    assert cfg.model.ema_momentum == pytest.approx(1 - 0.9)  # the one source of the momentum
    # full-weight distillation from the first step needs no schedule hook
    assert not [h for h in cfg.custom_hooks if h['type'] == 'granvit.DistillScheduleHook']
    assert cfg.train_dataloader.sampler.type == 'granvit.EpochTaggedSampler'
    assert cfg.train_dataloader.persistent_workers  # safe: the epoch travels with the index


def test_paper_config_stops_on_missing_paths(llm_dir, tmp_path):
    cfg = Config.fromfile(PAPER)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': str(tmp_path / 'missing.pth')})
    with pytest.raises(FileNotFoundError, match=r'(?s)vit_checkpoint.*siglip2_to_granvit\.py'):
        MODELS.build(cfg.model)
    ckpt = tmp_path / 'vit.pth'
    torch.save({}, ckpt)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': str(ckpt),
                         'model.head.llm_path': str(tmp_path / 'no_llm')})
    with pytest.raises(FileNotFoundError, match=r'(?s)model\.head\.llm_path.*Qwen2\.5-1\.5B'):
        MODELS.build(cfg.model)


def test_paper_config_builds_with_standins(llm_dir, tmp_path):
    """The real recipe's model code and loading path, with a tiny GranViT checkpoint and a tiny Qwen2."""
    vit = MODELS.build(dict(type='GranViT', arch=TINY_ARCH, img_size=64, patch_size=16))
    ckpt = tmp_path / 'granvit_tiny.pth'
    torch.save(vit.state_dict(), ckpt)
    cfg = Config.fromfile(PAPER)
    cfg.merge_from_dict({'model.backbone.arch': dict(TINY_ARCH, _delete_=True), 'model.backbone.img_size': 64,
                         'model.backbone.init_cfg.checkpoint': str(ckpt), 'model.head.llm_path': llm_dir,
                         'model.distill_loss.crop_size': 32})
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.head.llm).__name__ == 'Qwen2ForCausalLM'
    assert model.head.llm.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    # the checkpoint's final LayerNorm is not part of the visual tokens (granvit_mm/core/visual_tokens.py)
    assert not any(k.startswith('norm.') for k in model.backbone.state_dict())
    for k, v in vit.state_dict().items():
        if k.startswith('norm.'):
            continue
        torch.testing.assert_close(model.backbone.state_dict()[k], v)
        torch.testing.assert_close(model.teacher.module.state_dict()[k], v)
    assert model.backbone.with_cp and model.head.llm.get_decoder().gradient_checkpointing


def test_tiny_config_builds(llm_dir):
    cfg = Config.fromfile(TINY)
    cfg.merge_from_dict({'model.head.llm_path': llm_dir, 'model.backbone.init_cfg': None})
    model = MODELS.build(cfg.model)
    assert model.projector.in_channels == model.backbone.embed_dims
    assert model.projector.out_channels == model.head.hidden_size
    assert model.distill_loss.max_regions == cfg.max_distill_regions


def test_tiny_config_trains_the_vit_at_the_papers_lr(llm_dir):
    """The built optimiser: every trainable ViT weight (its position table included) at 1e-5, the projector,
    which starts from random, at 1e-3; no frozen LLM weight in it."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(TINY)
    cfg.merge_from_dict({'model.head.llm_path': llm_dir, 'model.backbone.init_cfg': None})
    model = MODELS.build(cfg.model)
    lr_of = {id(p): g['lr'] for g in build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
             for p in g['params']}
    names = {n: lr_of.get(id(p)) for n, p in model.named_parameters() if p.requires_grad}
    vit = {n: lr for n, lr in names.items() if n.startswith('backbone.')}
    assert 'backbone.pos_embed' in vit and len(vit) > 10
    assert list(vit.values()) == pytest.approx([1e-5] * len(vit))
    proj = {n: lr for n, lr in names.items() if n.startswith('projector.')}
    assert proj and list(proj.values()) == pytest.approx([1e-3] * len(proj))
    assert set(names) == set(vit) | set(proj)


def test_tiny_config_without_llm_names_the_command(tmp_path):
    cfg = Config.fromfile(TINY)
    cfg.merge_from_dict({'model.head.llm_path': str(tmp_path / 'tiny_llm'), 'model.backbone.init_cfg': None})
    with pytest.raises(FileNotFoundError, match='tools/misc/make_tiny_llm.py'):
        MODELS.build(cfg.model)
