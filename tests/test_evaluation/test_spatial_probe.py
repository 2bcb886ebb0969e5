"""The sub-patch probe reads where a box edge runs inside a patch, and pixel detail, from tokens that keep
them."""
import os.path as osp

import torch
from repo_tools import ROOT as REPO
from repo_tools import load_tool

from granvit_mm.evaluation.spatial_probe import (box_occupancy, crossed_by_edge, patch_pixels,
                                                 position_accuracy, spatial_probe)


def test_box_occupancy_per_sub_cell():
    # 32 px image, 2x2 patches of 16 px, 4x4 sub-cells of 4 px; the box covers x in [0, 20), y in [0, 32)
    occ = box_occupancy([torch.tensor([[0., 0., 20., 32.]])], 32, grid=2, cells=4)
    assert occ.shape == (1, 2, 2, 16)
    assert torch.all(occ[0, :, 0] == 1)  # left patches: inside
    right = occ[0, 0, 1].view(4, 4)
    torch.testing.assert_close(right[:, 0], torch.ones(4))  # x in [16, 20): the first sub-cell column
    torch.testing.assert_close(right[:, 1:], torch.zeros(4, 3))
    assert crossed_by_edge(occ.flatten(0, 2)).tolist() == [False, True, False, True]
    # two boxes: their union, an empty image: nothing
    both = box_occupancy([torch.tensor([[0., 0., 16., 16.], [16., 16., 32., 32.]]), torch.zeros(0, 4)],
                         32, 2, 4)
    assert both[0, 0, 0].min() == 1 and both[0, 1, 1].min() == 1 and both[0, 0, 1].max() == 0
    assert both[1].max() == 0


def test_patch_pixels_is_the_patch():
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    pix = patch_pixels(img, grid=2)
    assert pix.shape == (2, 2, 2, 12)
    torch.testing.assert_close(pix[1, 0, 1], img[1, :, 0:2, 2:4].reshape(-1))


def test_probe_tells_informative_tokens_from_noise():
    g = torch.Generator().manual_seed(0)
    occ = (torch.rand(3000, 16, generator=g) > 0.5).float()  # every patch crossed by an edge
    pix = torch.randn(3000, 12, generator=g)
    informative = torch.cat([occ, pix], 1) + 0.05 * torch.randn(3000, 28, generator=g)
    good = spatial_probe(informative[:2000], occ[:2000], informative[2000:], occ[2000:], pix[:2000],
                         pix[2000:])
    assert good['edge_cell_acc'] > 99 and good['pixel_r2'] > 95 and \
        good['edge_patches'] == int(crossed_by_edge(occ[2000:]).sum())
    noise = torch.randn(3000, 28, generator=g)
    bad = spatial_probe(noise[:2000], occ[:2000], noise[2000:], occ[2000:], pix[:2000], pix[2000:])
    assert 40 < bad['edge_cell_acc'] < 60 and bad['pixel_r2'] < 5


def test_position_accuracy_reads_a_position_code_and_not_noise():
    g = torch.Generator().manual_seed(0)
    grid, n_img = 4, 60
    code = torch.randn(grid * grid, 16, generator=g)  # one vector per patch position, like a pos-embed
    content = torch.randn(n_img * grid * grid, 8, generator=g)
    with_pos = torch.cat([code.repeat(n_img, 1), content], 1)
    assert position_accuracy(with_pos[:640], with_pos[640:], grid) == 100.0
    assert position_accuracy(content[:640], content[640:], grid) < 15  # chance is 1/16


def test_spatial_probe_tool_on_gransynth(tmp_path):
    """End to end on GranSynth: a random tiny ViT's tokens keep most of their patch's pixels (the docs'
    finding)."""
    from granvit_mm.toy.gran_synth import generate
    root = str(tmp_path / 'synth')
    generate(root, num_train=60, num_val=30, ocr_fraction=0.0)
    tool = load_tool('tools/analysis_tools/spatial_probe.py')
    res = tool.main(['--data-root', root, '--config', osp.join(REPO, 'configs', 'granvit_pretrain_tiny.py'),
                     '--encoder', 'random', '--out', str(tmp_path / 'spatial.json')])
    assert res['random']['pixel_r2'] > 80 and res['random']['edge_patches'] > 0
    assert res['random']['position_acc'] > 50  # a random ViT's tokens still carry their pos-embed
    assert osp.isfile(tmp_path / 'spatial.json')
