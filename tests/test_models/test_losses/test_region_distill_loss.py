"""Crop and RoIAlign geometry of the self-distillation loss, on cases whose right answer is known."""
import pytest
import torch
import torch.nn.functional as F

from granvit_mm.models.losses import RegionDistillLoss, boxes_to_rois

P = 4  # patch size of the stand-in "backbone": per-patch average pooling of the image


def _backbone(x):
    return F.avg_pool2d(x, P)


@pytest.mark.parametrize('box, crop_size', [
    ([8., 8., 16., 16.], 8),     # 2x2 patches, crop at native resolution
    ([0., 0., 16., 16.], 8),     # 4x4 patches, crop downscaled 2x (adaptive sampling averages 2x2 pixels)
    ([12., 4., 28., 20.], 16),   # 4x4 patches elsewhere, native resolution
])
def test_student_roi_equals_teacher_on_pooled_crop(box, crop_size):
    torch.manual_seed(0)
    img = torch.randn(2, 3, 32, 32)
    loss = RegionDistillLoss(crop_size=crop_size, roi_size=2)
    rois = loss.rois([torch.zeros(0, 4), torch.tensor([box])])
    assert rois.tolist() == [[1.0] + box]
    crops = loss.crops(img, rois)
    assert crops.shape == (1, 3, crop_size, crop_size)
    student = loss.student_regions(_backbone(img), rois, img.shape[-1])
    teacher = loss.teacher_regions(_backbone(crops))
    x1, y1, x2, y2 = [int(v) for v in box]
    expected = F.adaptive_avg_pool2d(img[1:, :, y1:y2, x1:x2], 2)  # the region's 2x2 grid of pixel means
    torch.testing.assert_close(student, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(teacher, expected, atol=1e-5, rtol=1e-5)
    assert float(loss.mse(student, teacher)) < 1e-10


def test_native_crop_is_the_pixels():
    img = torch.randn(1, 3, 32, 32)
    crops = RegionDistillLoss(crop_size=8).crops(img, torch.tensor([[0., 8., 4., 16., 12.]]))
    torch.testing.assert_close(crops[0], img[0, :, 4:12, 8:16])


def test_misaligned_box_differs():
    """Teeth: a box shifted by one patch no longer matches."""
    torch.manual_seed(0)
    img = torch.randn(1, 3, 32, 32)
    loss = RegionDistillLoss(crop_size=8, roi_size=2)
    student = loss.student_regions(_backbone(img), loss.rois([torch.tensor([[12., 8., 20., 16.]])]), 32)
    crops = loss.crops(img, loss.rois([torch.tensor([[8., 8., 16., 16.]])]))
    teacher = loss.teacher_regions(_backbone(crops))
    assert float(loss.mse(student, teacher)) > 1e-3


def test_rois_cap_and_shapes():
    rois = boxes_to_rois([torch.rand(6, 4), torch.rand(1, 4)], max_regions=4)
    assert rois.shape == (5, 5) and rois[:, 0].tolist() == [0, 0, 0, 0, 1]
    assert (rois[:, 3:] >= rois[:, 1:3]).all()  # degenerate boxes become empty, not invalid
    loss = RegionDistillLoss(crop_size=16, roi_size=7)
    student = loss.student_regions(torch.randn(2, 8, 4, 4), rois * torch.tensor([1., 32, 32, 32, 32]), 32)
    assert student.shape == (5, 8, 7, 7)
    assert loss.teacher_regions(torch.randn(5, 8, 2, 2)).shape == (5, 8, 7, 7)


def test_forward_owns_geometry_and_weight():
    """One call: rois, crops, teacher forward without gradient, pooling, RoIAlign, MSE and the weight."""
    torch.manual_seed(0)
    img = torch.randn(2, 3, 32, 32)
    student_map = _backbone(img).requires_grad_(True)
    boxes = [torch.tensor([[8., 8., 16., 16.]]), torch.tensor([[0., 0., 16., 16.], [12., 4., 28., 20.]])]
    loss = RegionDistillLoss(crop_size=8, roi_size=2, loss_weight=2.0)
    seen = []

    def teacher(crops):
        seen.append(torch.is_grad_enabled())
        return _backbone(crops) + 1.0  # a constant offset: MSE exactly 1 everywhere

    out = loss(img, student_map, boxes, teacher, factor=0.5)
    assert seen == [False]
    assert float(out['mse_distill']) == pytest.approx(1.0, abs=1e-5)
    assert float(out['loss_distill']) == pytest.approx(2.0 * 0.5 * 1.0, abs=1e-5)
    out['loss_distill'].backward()
    assert student_map.grad is not None and student_map.grad.abs().sum() > 0


@pytest.mark.parametrize('factor, boxes',
                         [(0.0, [torch.tensor([[0., 0., 8., 8.]])]), (1.0, [torch.zeros(0, 4)])])
def test_forward_skips_without_factor_or_boxes(factor, boxes):
    img = torch.randn(1, 3, 32, 32)
    student_map = _backbone(img).requires_grad_(True)
    called = []
    out = RegionDistillLoss(crop_size=8)(img, student_map, boxes, lambda c: called.append(1), factor)
    assert not called and float(out['loss_distill']) == 0.0
    out['loss_distill'].backward()  # the zero keeps the student's graph (DDP)
    assert student_map.grad is not None
