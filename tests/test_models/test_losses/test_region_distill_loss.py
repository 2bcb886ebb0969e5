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
    assert float(out['mse_distill']) == 0.0 and not out['mse_distill'].requires_grad
    out['loss_distill'].backward()  # the zero keeps the student's graph (DDP)
    assert student_map.grad is not None


# ---- the feature_norm paths against formulas written here with plain torch ops -----------------------------
def _plain_layernorm(x, eps=1e-5):
    """Per position, over channels (dim 1): (x - mean) / sqrt(biased var + eps)."""
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _regions(seed):
    g = torch.Generator().manual_seed(seed)
    # per-channel scales and offsets, so that normalising changes the answer a lot
    scale = torch.linspace(0.2, 5.0, 6).view(1, 6, 1, 1)
    return (torch.randn(3, 6, 2, 2, generator=g) * scale + 2.0,
            torch.randn(3, 6, 2, 2, generator=g) * scale.flip(1) - 1.0)


def test_layernorm_mse_is_the_formula():
    """Teeth: the configs' path (feature_norm='layernorm') is MSE of channel-LayerNormed grids, not raw."""
    student, target = _regions(0)
    loss = RegionDistillLoss(feature_norm='layernorm')
    expected = ((_plain_layernorm(student) - _plain_layernorm(target)) ** 2).mean()
    raw = ((student - target) ** 2).mean()
    got = loss.mse(student, target)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert abs(float(raw) - float(expected)) > 1.0  # a fallback to raw MSE could not pass
    # blind to each position's feature scale and offset on either side
    rescaled = loss.mse(3.0 * student + 7.0, 0.5 * target - 2.0)
    torch.testing.assert_close(rescaled, expected, atol=1e-5, rtol=1e-4)


def test_raw_mse_is_the_formula():
    """feature_norm=None (the paper's): plain MSE of the raw grids, which does see the feature scale."""
    student, target = _regions(1)
    loss = RegionDistillLoss()
    assert loss.feature_norm is None
    expected = ((student - target) ** 2).mean()
    torch.testing.assert_close(loss.mse(student, target), expected, atol=1e-6, rtol=1e-6)
    assert float(loss.mse(3.0 * student, target)) > 2 * float(loss.mse(student, target))


def test_layernorm_forward_end_to_end():
    """forward with the layernorm path: the teacher's maps go through the same per-position normalisation."""
    torch.manual_seed(0)
    img = torch.randn(1, 3, 32, 32)
    student_map = _backbone(img).requires_grad_(True)
    boxes = [torch.tensor([[0., 0., 16., 16.], [8., 8., 24., 24.]])]
    g = torch.Generator().manual_seed(3)
    gain = torch.rand(1, 3, 1, 1, generator=g) + 0.5

    def teacher(crops):  # a per-channel affine change of the student's features plus noise
        return _backbone(crops) * gain + 0.1 * torch.randn(_backbone(crops).shape, generator=g)

    loss = RegionDistillLoss(crop_size=8, roi_size=2, loss_weight=2.0, feature_norm='layernorm')
    out = loss(img, student_map, boxes, teacher, factor=0.5)
    g.manual_seed(3)
    gain = torch.rand(1, 3, 1, 1, generator=g) + 0.5
    rois = loss.rois(boxes)
    target = F.adaptive_avg_pool2d(teacher(loss.crops(img, rois)), 2)
    student = loss.student_regions(student_map.detach(), rois, 32)
    expected = ((_plain_layernorm(student) - _plain_layernorm(target)) ** 2).mean()
    torch.testing.assert_close(out['mse_distill'], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out['loss_distill'].detach(), 2.0 * 0.5 * expected, atol=1e-6, rtol=1e-5)


def test_unknown_feature_norm_is_refused():
    with pytest.raises(ValueError,
                       match="feature_norm must be None, 'layernorm' or 'centered_layernorm', got 'l2'"):
        RegionDistillLoss(feature_norm='l2')
    with pytest.raises(ValueError, match="teacher_input must be 'crop' or 'crop_in_place', got 'full'"):
        RegionDistillLoss(teacher_input='full')


def test_centered_layernorm_is_the_formula_and_ignores_a_shared_offset():
    """Each side minus its per-channel mean over all compared tokens, then LayerNorm: an offset added to every
    student token (the shortcut 'layernorm' rewards, docs/toy_grounding.md) leaves the loss unchanged."""
    student, target = _regions(2)
    loss = RegionDistillLoss(feature_norm='centered_layernorm')

    def centred(x):
        return _plain_layernorm(x - x.mean(dim=(0, 2, 3), keepdim=True))

    expected = ((centred(student) - centred(target)) ** 2).mean()
    torch.testing.assert_close(loss.mse(student, target), expected, atol=1e-6, rtol=1e-5)
    offset = torch.linspace(-20.0, 20.0, student.shape[1]).view(1, -1, 1, 1)
    torch.testing.assert_close(loss.mse(student + offset, target), expected, atol=1e-5, rtol=1e-4)
    ln = RegionDistillLoss(feature_norm='layernorm')
    assert abs(float(ln.mse(student + offset, target)) - float(expected)) > 0.5
    # the plain 'layernorm' loss falls when the student's tokens share a large offset and the target's do too
    assert float(ln.mse(student + offset, target + offset)) < 0.5 * float(ln.mse(student, target))


def test_crop_in_place_keeps_the_box_where_it_is_and_blanks_the_rest():
    """teacher_input='crop_in_place': teacher image k is the image of box k with every pixel whose centre is
    outside the box set to 0, at full size, and its map is RoIAligned at box k like the student's."""
    torch.manual_seed(0)
    img = torch.randn(2, 3, 32, 32)
    boxes = [torch.tensor([[4., 8., 20., 28.]]), torch.tensor([[0., 0., 32., 16.], [8., 12., 16., 16.]])]
    loss = RegionDistillLoss(roi_size=2, teacher_input='crop_in_place')
    rois = loss.rois(boxes)
    crops = loss.crops_in_place(img, rois)
    assert crops.shape == (3, 3, 32, 32)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.long().tolist()):
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        assert torch.equal(crops[k][:, inside], img[b][:, inside])
        assert (crops[k][:, ~inside] == 0).all()
    seen = []

    def teacher(x):
        seen.append(tuple(x.shape))
        return _backbone(x)

    out = loss(img, _backbone(img), boxes, teacher)
    assert seen == [(3, 3, 32, 32)]
    own = torch.cat([torch.arange(3.)[:, None], rois[:, 1:]], dim=1)  # teacher image k holds box k
    expected = ((loss.student_regions(_backbone(img), rois, 32)
                 - loss.student_regions(_backbone(crops), own, 32)) ** 2).mean()
    torch.testing.assert_close(out['mse_distill'], expected, atol=1e-7, rtol=1e-5)
    # RoIAlign's edge samples reach the blanked patches just outside the box: small, not zero
    assert 0.0 < float(expected) < 0.01
    # the paper's resized crop of the same aligned boxes goes through crop_size, not the image size
    RegionDistillLoss(crop_size=8, roi_size=2)(img, _backbone(img), boxes, teacher)
    assert seen[-1] == (3, 3, 8, 8)


def test_crop_in_place_keeps_a_pixel_whose_centre_is_on_the_box_edge():
    """A pixel belongs to the box when its centre lies in it, edges included: a box from 3.5 to 7.5 keeps
    columns 3-7 (centres 3.5-7.5), one from 2.5 to 5.5 keeps rows 2-5; a non-square image keeps rows and
    columns apart."""
    img = torch.ones(1, 1, 8, 12)
    crop = RegionDistillLoss(teacher_input='crop_in_place').crops_in_place(
        img, torch.tensor([[0., 3.5, 2.5, 7.5, 5.5]]))
    expected = torch.zeros(8, 12)
    expected[2:6, 3:8] = 1
    assert torch.equal(crop[0, 0], expected)


def test_documented_defaults():
    """The defaults the docstring states (ours: 224 crops, 7x7 grids, 4 regions, weight 1, raw MSE, the
    paper's resized crops)."""
    loss = RegionDistillLoss()
    assert (loss.crop_size, loss.roi_size, loss.max_regions, loss.loss_weight, loss.feature_norm,
            loss.teacher_input) == (224, 7, 4, 1.0, None, 'crop')
    assert RegionDistillLoss(max_regions=2).rois([torch.rand(6, 4)]).shape == (2, 5)
    assert boxes_to_rois([torch.rand(6, 4)]).shape == (6, 5)  # max_regions=0: every box


def test_rois_dtype_and_empty():
    rois = boxes_to_rois([[[0, 0, 8, 8]], [[1, 2, 3, 4]]])  # integer boxes from a list
    assert rois.dtype == torch.float32 and rois.tolist() == [[0., 0., 0., 8., 8.], [1., 1., 2., 3., 4.]]
    empty = boxes_to_rois([])
    assert empty.shape == (0, 5) and empty.dtype == torch.float32


def test_crop_downscaled_4x_averages_every_pixel():
    """Adaptive sampling: a 4x smaller crop is the 4x4 pixel mean (one bilinear sample per bin is not)."""
    torch.manual_seed(0)
    img = torch.randn(1, 3, 32, 32)
    crops = RegionDistillLoss(crop_size=8).crops(img, torch.tensor([[0., 0., 0., 32., 32.]]))
    torch.testing.assert_close(crops, F.avg_pool2d(img, 4), atol=1e-5, rtol=1e-5)
    whole = torch.tensor([[0., 0., 0., 32., 32.]])
    half = RegionDistillLoss(crop_size=8).crops(img.to(torch.bfloat16), whole)
    assert half.dtype == torch.bfloat16  # crops come back in the images' dtype


def test_non_square_image_uses_the_width_scale():
    """Student RoIs scale by feature width / image width; a wide image tells width from height."""
    torch.manual_seed(0)
    img = torch.randn(1, 3, 32, 48)
    loss = RegionDistillLoss(crop_size=8, roi_size=2)
    box = [24., 8., 40., 24.]
    rois = loss.rois([torch.tensor([box])])
    student = loss.student_regions(_backbone(img), rois, img.shape[-1])
    expected = F.adaptive_avg_pool2d(img[:, :, 8:24, 24:40], 2)
    torch.testing.assert_close(student, expected, atol=1e-5, rtol=1e-5)
    out = loss(img, _backbone(img), [torch.tensor([box])], _backbone)  # default factor 1, weight 1
    assert float(out['mse_distill']) < 1e-10
    offset = loss(img, _backbone(img), [torch.tensor([box])], lambda c: _backbone(c) + 1.0)
    assert float(offset['loss_distill']) == pytest.approx(1.0, abs=1e-5)
