"""A real stage-1 checkpoint (tools/train.py layout) through the inferencer: loading, answers, batching."""
import os.path as osp

import numpy as np
import pytest
import torch
from stage1_assets import synth_images, wide_image

from granvit_mm.apis import (CHAT_MODEL_LOADERS, GranViTInferencer, InferenceInputError, find_checkpoint,
                             register_chat_model_loader)
from granvit_mm.core.box_text import parse_box
from granvit_mm.core.image_input import to_model_input
from granvit_mm.core.paths import MissingPathError


def test_answers_every_question(inferencer):
    img, rec = synth_images(1)[0]
    boxes = [r['bbox'] for r in rec['regions']]
    out = inferencer(img, boxes=boxes, phrases=['a red circle', 'a blue star'], global_caption=True)[0]
    assert (out['width'], out['height']) == img.size
    assert [r['bbox'] for r in out['regions']] == boxes
    assert all(isinstance(r['caption'], str) and r['caption'] for r in out['regions'])
    assert isinstance(out['caption'], str) and out['caption']
    assert [g['phrase'] for g in out['grounding']] == ['a red circle', 'a blue star']
    parsed = 0
    side = max(img.size)
    for g in out['grounding']:
        box01 = parse_box(g['answer'])
        if g['bbox'] is None:
            continue
        parsed += 1
        hand = [min(box01[0] * side, img.width), min(box01[1] * side, img.height),
                min(box01[2] * side, img.width), min(box01[3] * side, img.height)]
        np.testing.assert_allclose(g['bbox'], hand, atol=0.01)
    assert parsed >= 1  # the test LLM answers Caption2Bbox with a box text


def test_batched_equals_one_by_one(inferencer):
    items = synth_images(3)
    images = [img for img, _ in items]
    boxes = [[r['bbox'] for r in rec['regions']] for _, rec in items]
    batched = inferencer(images, boxes=boxes, phrases='a red circle', global_caption=True, batch_size=3)
    single = [inferencer(img, boxes=b, phrases=['a red circle'], global_caption=True)[0]
              for img, b in zip(images, boxes)]
    assert batched == single


def test_loads_the_student_not_the_teacher(stage1, tmp_path):
    state = dict(stage1['state_dict'])
    teacher_keys = [k for k in state if k.startswith('teacher.module.')]
    assert teacher_keys and not any(k.startswith('head.llm.') for k in state)  # tools/train.py's layout
    for k in teacher_keys:
        state[k] = torch.randn_like(state[k])  # a teacher that differs from the student
    ckpt = tmp_path / 'iter_7.pth'
    torch.save(dict(state_dict=state), ckpt)
    infer = GranViTInferencer(stage1['config'], str(tmp_path), llm_path=stage1['llm_path'])
    assert infer.checkpoint == str(ckpt)  # a work dir resolves to its checkpoint
    loaded = infer.model.model.state_dict()
    for k, v in state.items():
        if k.startswith(('backbone.', 'projector.')):
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)
    assert infer.model.model.teacher is None


def test_features_are_the_backbone_map_of_the_model_input(inferencer):
    img = wide_image(200, 100)
    feats = inferencer.features(img)[0]
    pixels = torch.from_numpy(to_model_input(img, 64)[0])[None]
    with torch.no_grad():
        expected = inferencer.model.model.backbone(pixels)[-1][0]
    torch.testing.assert_close(feats.featmap, expected)
    assert feats.featmap.shape == (64, 8, 8)
    assert feats.image_grid == (4, 8)  # 100 * 64/200 = 32 px = 4 patch rows hold the image
    assert feats.image_features().shape == (64, 4, 8)


def test_checkpoint_that_does_not_fit_is_refused(stage1, tmp_path):
    state = {k: v for k, v in stage1['state_dict'].items() if not k.startswith('projector.')}
    torch.save(dict(state_dict=state), tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match=r'does not fit the config.*missing keys.*projector'):
        GranViTInferencer(stage1['config'], str(tmp_path / 'bad.pth'), llm_path=stage1['llm_path'])


def test_unsafe_checkpoint_is_refused_with_advice(stage1, tmp_path):
    torch.save(dict(state_dict={}, meta=dict(obj=np.random.default_rng(0))), tmp_path / 'pickled.pth')
    with pytest.raises(ValueError, match='refuses to load safely'):
        GranViTInferencer(stage1['config'], str(tmp_path / 'pickled.pth'), llm_path=stage1['llm_path'])


def test_missing_paths_say_what_to_do(stage1, tmp_path):
    with pytest.raises(MissingPathError, match='make demo'):
        GranViTInferencer(stage1['config'], str(tmp_path / 'nope.pth'), llm_path=stage1['llm_path'])
    with pytest.raises(MissingPathError, match='model.head.llm_path'):
        GranViTInferencer(stage1['config'], stage1['checkpoint'], llm_path=str(tmp_path / 'no_llm'))


def test_find_checkpoint_prefers_best_then_last_then_highest(tmp_path):
    for name in ('iter_2.pth', 'iter_10.pth', 'iter_9.pth'):
        (tmp_path / name).write_bytes(b'')
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/work_dir/iter_9.pth')  # moved work dir
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_9.pth')
    (tmp_path / 'best_bbox2caption_rouge_l_iter_5.pth').write_bytes(b'')
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'best_bbox2caption_rouge_l_iter_5.pth')
    assert find_checkpoint(str(tmp_path), prefer='last') == str(tmp_path / 'iter_9.pth')


def test_stage2_extension_point(monkeypatch, tmp_path, stage1):
    import granvit_mm.apis.chat_model as chat_model
    llava_cfg = dict(model=dict(type='LLaVAModel'))
    loaders = {k: v for k, v in CHAT_MODEL_LOADERS.items() if k != 'stage2'}
    monkeypatch.setattr(chat_model, 'CHAT_MODEL_LOADERS', loaders)  # registrations below are undone after
    with pytest.raises(NotImplementedError, match='register_chat_model_loader'):
        GranViTInferencer(llava_cfg, stage1['checkpoint'])  # auto: not a GranViTPretrainer -> stage 2
    seen = {}

    @register_chat_model_loader('stage2')
    def load(cfg, checkpoint, device='cpu', llm_path=None):
        from fake_chat_model import FakeChatModel
        seen.update(type=cfg.model.type, checkpoint=checkpoint, llm_path=llm_path)
        return FakeChatModel({'Please provide the bounding box coordinate of the region this sentence '
                              'describes: a cat': '[0.000, 0.000, 0.500, 0.500]'})

    assert loaders['stage2'] is load
    infer = GranViTInferencer(llava_cfg, stage1['checkpoint'], llm_path='/llm')
    assert seen == dict(type='LLaVAModel', checkpoint=stage1['checkpoint'], llm_path='/llm')
    assert infer.ground(wide_image(100, 60), 'a cat')[0]['bbox'] == [0.0, 0.0, 50.0, 50.0]


def test_bad_input_through_the_real_model(inferencer, tmp_path):
    (tmp_path / 'a.txt').write_text('hello')
    with pytest.raises(InferenceInputError, match='not an image'):
        inferencer(str(tmp_path / 'a.txt'), global_caption=True)
    with pytest.raises(InferenceInputError, match='outside'):
        inferencer(wide_image(50, 40), boxes=[[0, 0, 60, 10]])
    assert osp.isfile(inferencer.checkpoint)


def test_builds_whatever_default_scope_the_caller_left(stage1):
    # mmdet's DetInferencer (the data engine's box stage) leaves MMEngine's default scope at 'mmdet'
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        infer = GranViTInferencer(stage1['config'], stage1['checkpoint'], llm_path=stage1['llm_path'])
        img, rec = synth_images(1)[0]
        assert infer.caption_regions(img, [rec['regions'][0]['bbox']])[0]
