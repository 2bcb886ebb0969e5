"""A Pretrained init that does not fit stops with what to set, instead of training from random weights."""
import pytest
import torch
import torch.nn.functional as F

from granvit_mm.models.backbones import GranViT
from granvit_mm.models.backbones.pretrained_check import PretrainedMismatchError

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def _vit(**kw):
    return GranViT(arch=ARCH, img_size=32, patch_size=8, **kw)


@pytest.fixture
def stage1_ckpt(tmp_path):
    """What tools/train.py writes for GranViTPretrainer: student under backbone., teacher under
    teacher.module., plus a projector."""
    student, teacher = _vit(), _vit()
    state = {f'backbone.{k}': v for k, v in student.state_dict().items()}
    state.update({f'teacher.module.{k}': v for k, v in teacher.state_dict().items()})
    state['projector.model.0.weight'] = torch.zeros(4, 32)
    path = tmp_path / 'iter_10.pth'
    torch.save(dict(state_dict=state, meta=dict(iter=10)), path)
    return str(path), student, teacher


def test_stage1_checkpoint_without_prefix_names_the_prefix(stage1_ckpt):
    path, _, _ = stage1_ckpt
    vit = _vit(init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(PretrainedMismatchError, match=r"prefix='backbone\.'") as err:
        vit.init_weights()
    assert "prefix='teacher.module.'" in str(err.value) and path in str(err.value)


@pytest.mark.parametrize('prefix, which', [('backbone.', 1), ('teacher.module.', 2)])
def test_documented_line_loads_student_or_teacher(stage1_ckpt, prefix, which):
    path, student, teacher = stage1_ckpt
    vit = _vit(init_cfg=dict(type='Pretrained', checkpoint=path, prefix=prefix))
    vit.init_weights()
    ref = (student, teacher)[which - 1]
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(vit.state_dict()[k], v, rtol=0, atol=0)


def test_patch_size_mismatch_stops(tmp_path):
    path = tmp_path / 'p16.pth'
    torch.save(GranViT(arch=ARCH, img_size=64, patch_size=16).state_dict(), path)
    vit = _vit(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(PretrainedMismatchError, match=r'patch_embed\.weight: checkpoint \(32, 3, 16, 16\)'):
        vit.init_weights()


def test_fewer_layers_stops_and_other_resolution_loads(tmp_path):
    path = tmp_path / 'one_layer.pth'
    torch.save(GranViT(arch=dict(ARCH, num_layers=1), img_size=32, patch_size=8).state_dict(), path)
    with pytest.raises(PretrainedMismatchError, match='lacks'):
        _vit(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    ok = tmp_path / 'res64.pth'
    source = GranViT(arch=ARCH, img_size=64, patch_size=8).state_dict()
    torch.save(source, ok)  # longer pos_embed: resized
    vit = _vit(init_cfg=dict(type='Pretrained', checkpoint=str(ok)))
    vit.init_weights()
    # the loaded weights are the checkpoint's, its 8x8 position table resized bicubically to the 4x4 grid
    grid = source['pos_embed'].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(4, 4), mode='bicubic', align_corners=False)
    loaded = vit.state_dict()
    torch.testing.assert_close(loaded['pos_embed'], resized.flatten(2).transpose(1, 2), rtol=1e-6, atol=1e-6)
    assert set(loaded) == set(source)
    for k, v in source.items():
        if k != 'pos_embed':
            assert torch.equal(loaded[k], v), k


def test_wrong_prefix_says_so(stage1_ckpt):
    path, _, _ = stage1_ckpt
    with pytest.raises(PretrainedMismatchError, match="starts with prefix='student.'"):
        _vit(init_cfg=dict(type='Pretrained', checkpoint=path, prefix='student.')).init_weights()
