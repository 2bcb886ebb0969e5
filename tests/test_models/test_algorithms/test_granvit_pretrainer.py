"""GranViTPretrainer: what trains, the EMA teacher, distillation, blind mode, predict, path checks."""
import copy

import pytest
import torch

from granvit_mm.core.prompts import bbox2caption_question
from granvit_mm.registry import MODELS
from granvit_mm.structures import GranDataSample
from granvit_mm.toy.tiny_llm import save_tiny_llm

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


@pytest.fixture(scope='module')
def llm_dir(tmp_path_factory):
    return save_tiny_llm(str(tmp_path_factory.mktemp('tiny_llm')), vocab_size=400)


def _cfg(llm_dir, **kwargs):
    cfg = dict(type='GranViTPretrainer',
               backbone=dict(type='GranViT', arch=ARCH, img_size=32, patch_size=8),
               head=dict(type='RegionARHead', llm_path=llm_dir),
               distill_loss=dict(type='RegionDistillLoss', crop_size=16, roi_size=2, max_regions=2))
    cfg.update(kwargs)
    return cfg


def _batch(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(n):
        inputs.append(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g))
        s = GranDataSample()
        s.tasks = [dict(task='bbox2caption', question=bbox2caption_question([0.25, 0.25, 0.75, 0.75]),
                        answer='a red circle', box=[0.25, 0.25, 0.75, 0.75], region=0),
                   dict(task='bbox2caption', question=bbox2caption_question([0.0, 0.0, 0.5, 0.5]),
                        answer='a blue star' * (i + 1), box=[0.0, 0.0, 0.5, 0.5], region=1)]
        s.distill_bboxes = torch.tensor([[8., 8., 24., 24.], [0., 0., 16., 16.], [0., 0., 8., 8.]])[:3 - i]
        samples.append(s)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=True)


def test_gradients_reach_only_vit_and_projector(llm_dir):
    model = MODELS.build(_cfg(llm_dir))
    model.init_weights()
    model.train()
    losses = model(**_batch(model), mode='loss')
    assert {'loss_caption', 'loss_distill', 'acc_caption', 'mse_distill'} <= set(losses)
    assert float(losses['loss_distill']) > 0
    total, log_vars = model.parse_losses(losses)
    assert set(k for k in log_vars if 'loss' in k) == {'loss', 'loss_caption', 'loss_distill'}
    total.backward()
    for name, p in list(model.backbone.named_parameters()) + list(model.projector.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(not p.requires_grad and p.grad is None for p in model.head.llm.parameters())
    assert all(not p.requires_grad and p.grad is None for p in model.teacher.parameters())
    assert not model.head.llm.training and not model.teacher.training


def test_teacher_follows_ema_formula(llm_dir):
    model = MODELS.build(_cfg(llm_dir))
    model.init_weights()
    for (n, s), t in zip(model.backbone.named_parameters(), model.teacher.module.parameters()):
        torch.testing.assert_close(s, t, rtol=0, atol=0)
    crops = torch.randn(3, 3, 16, 16)  # not the native 32 px: exercises the resized position table
    model.teacher.module(crops)
    before = copy.deepcopy(model.teacher.module.state_dict())
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(torch.randn_like(p))
    assert model.teacher.momentum == 0.1  # paper alpha 0.9, from the model's one setting
    model.update_teacher()
    student = model.backbone.state_dict()
    for k, v in model.teacher.module.state_dict().items():
        torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * student[k], atol=1e-6, rtol=1e-6)
    # the teacher's forward uses the new weights (no stale cache of derived tensors)
    fresh = MODELS.build(dict(type='GranViT', arch=ARCH, img_size=32, patch_size=8, final_norm=False)).eval()
    fresh.load_state_dict(model.teacher.module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.teacher.module(crops)[-1], fresh(crops)[-1])


def _optim_wrapper(model, accumulative_counts=1):
    from mmengine.optim import OptimWrapper
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.SGD(params, lr=0.5), accumulative_counts=accumulative_counts)


@pytest.mark.parametrize('accumulate', [1, 2])
def test_teacher_moves_after_each_optimizer_step_without_any_hook(llm_dir, accumulate):
    """The algorithm owns the teacher: a plain train_step (no DistillScheduleHook) moves it once per real
    optimiser step, by the model's own ema_momentum, and never between accumulation micro-steps."""
    model = MODELS.build(_cfg(llm_dir, ema_momentum=0.25))
    model.init_weights()
    model.train()
    wrapper = _optim_wrapper(model, accumulate)
    wrapper.initialize_count_status(model, 0, 4)
    key = 'layers.0.attn.qkv.weight'
    for it in range(4):
        teacher_before = model.teacher.module.state_dict()[key].clone()
        student_before = model.backbone.state_dict()[key].clone()
        model.train_step(_batch(model, seed=it), wrapper)
        teacher_after = model.teacher.module.state_dict()[key]
        stepped = (it + 1) % accumulate == 0
        assert int(model.teacher.steps) == 1 + (it + 1) // accumulate
        if stepped:
            student = model.backbone.state_dict()[key]
            assert not torch.equal(student, student_before)
            torch.testing.assert_close(teacher_after, 0.75 * teacher_before + 0.25 * student)
        else:
            torch.testing.assert_close(teacher_after, teacher_before, rtol=0, atol=0)


def test_other_optimizers_and_eval_mode_leave_teacher(llm_dir):
    model = MODELS.build(_cfg(llm_dir))
    model.init_weights()
    steps = int(model.teacher.steps)
    other = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    other(torch.ones(1, 2)).sum().backward()
    model.train()
    opt.step()  # an optimiser that does not hold the student
    model.eval()
    _optim_wrapper(model).optimizer.step()  # the student's optimiser, but the model is not training
    assert int(model.teacher.steps) == steps


def test_pretrained_init_reaches_teacher(llm_dir, tmp_path):
    ref = MODELS.build(dict(type='GranViT', arch=ARCH, img_size=32, patch_size=8, final_norm=False))
    ckpt = tmp_path / 'vit.pth'
    torch.save(ref.state_dict(), ckpt)
    cfg = _cfg(llm_dir)
    cfg['backbone']['init_cfg'] = dict(type='Pretrained', checkpoint=str(ckpt))
    model = MODELS.build(cfg)
    model.init_weights()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[k], v)
        torch.testing.assert_close(model.teacher.module.state_dict()[k], v)


def test_distill_factor_zero_skips_teacher(llm_dir):
    model = MODELS.build(_cfg(llm_dir))
    model.init_weights()
    calls = []
    model.teacher.module.register_forward_hook(lambda *a: calls.append(1))
    model.set_distill_factor(0.0)
    losses = model(**_batch(model), mode='loss')
    assert float(losses['loss_distill']) == 0.0 and not calls
    model.set_distill_factor(0.5)
    half = model(**_batch(model), mode='loss')
    assert calls and float(half['loss_distill']) == pytest.approx(0.5 * float(half['mse_distill']))


def test_no_distill_has_no_teacher(llm_dir):
    model = MODELS.build(_cfg(llm_dir, distill_loss=None))
    model.init_weights()
    assert model.teacher is None
    assert set(model(**_batch(model), mode='loss')) == {'loss_caption', 'acc_caption'}


def test_blind_ignores_the_image(llm_dir):
    model = MODELS.build(_cfg(llm_dir, blind=True)).eval()
    data = _batch(model)
    feats = model(data['inputs'], mode='tensor')
    torch.testing.assert_close(feats[0], feats[1])


def test_predict_writes_pred_texts(llm_dir):
    head = dict(type='RegionARHead', llm_path=llm_dir, max_new_tokens=3)
    model = MODELS.build(_cfg(llm_dir, head=head)).eval()
    data = model.data_preprocessor(_raw(), training=False)
    out = model(**data, mode='predict')
    assert [len(s.pred_texts) for s in out] == [2, 2]


def test_predict_answers_each_image_on_its_own_sample(llm_dir):
    """Teeth: two different images and prompts in one batch get the answers each gets alone, on its own sample
    (a batch whose answers were swapped, or all taken from the first image, fails)."""
    torch.manual_seed(0)
    head = dict(type='RegionARHead', llm_path=llm_dir, max_new_tokens=4)
    model = MODELS.build(_cfg(llm_dir, head=head)).eval()
    g = torch.Generator().manual_seed(0)
    for p in model.head.llm.parameters():  # a tiny LM whose greedy answers depend on its input
        if p.dim() >= 2:
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.3)
    raw = _raw()
    raw['inputs'][1] = 255 - raw['inputs'][1].flip(-1)
    task = raw['data_samples'][1].tasks[0]
    raw['data_samples'][1].tasks = [task, dict(task, question=bbox2caption_question([0.5, 0.0, 1.0, 0.5]))]
    alone = []
    for i in range(2):
        one = dict(inputs=raw['inputs'][i:i + 1], data_samples=[copy.deepcopy(raw['data_samples'][i])])
        alone.append(model(**model.data_preprocessor(one, training=False), mode='predict')[0].pred_texts)
    assert alone[0][0] != alone[1][0]  # one question, two images: the answer depends on the image
    assert alone[0][1] != alone[1][1]
    out = model(**model.data_preprocessor(raw, training=False), mode='predict')
    assert [s.pred_texts for s in out] == alone


def _raw():
    g = torch.Generator().manual_seed(1)
    s = GranDataSample()
    s.tasks = [dict(task='bbox2caption', question=bbox2caption_question([0, 0, 1, 1]), answer='x', box=None,
                    region=0)] * 2
    return dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)] * 2,
                data_samples=[s, copy.deepcopy(s)])


def test_state_dict_leaves_out_llm_and_reloads(llm_dir):
    model = MODELS.build(_cfg(llm_dir))
    model.init_weights()
    state = model.state_dict()
    assert not any(k.startswith('head.llm.') for k in state)
    assert any(k.startswith('teacher.module.') for k in state)
    other = MODELS.build(_cfg(llm_dir))
    other.load_state_dict(state, strict=True)


def test_missing_paths_fail_with_instructions(llm_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match='make_tiny_llm.py'):
        MODELS.build(_cfg(str(tmp_path / 'nope')))
    cfg = _cfg(llm_dir)
    cfg['backbone']['init_cfg'] = dict(type='Pretrained', checkpoint=str(tmp_path / 'vit.pth'))
    with pytest.raises(FileNotFoundError, match='siglip2_to_granvit.py'):
        MODELS.build(cfg)
