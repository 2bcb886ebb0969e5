"""The region probe reads attributes that features carry, and only those."""
import os.path as osp
import sys

import torch

from granvit_mm.evaluation.region_probe import linear_probe_accuracy, probe_attributes, region_features

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_region_features_pool_at_the_box():
    fmap = torch.zeros(1, 2, 4, 4)
    fmap[0, 0, 2:, 2:] = 1.0  # channel 0 is on in the bottom-right quarter only
    feats = region_features(fmap, [torch.tensor([[32., 32., 64., 64.], [0., 0., 32., 32.]])], 64, roi_size=1)
    torch.testing.assert_close(feats, torch.tensor([[1., 0.], [0., 0.]]))


def test_probe_separates_informative_from_noise_features():
    g = torch.Generator().manual_seed(0)
    y_tr, y_va = torch.randint(0, 4, (400, ), generator=g), torch.randint(0, 4, (200, ), generator=g)
    centers = torch.randn(4, 16, generator=g) * 3
    x_tr = centers[y_tr] + torch.randn(400, 16, generator=g)
    x_va = centers[y_va] + torch.randn(200, 16, generator=g)
    assert linear_probe_accuracy(x_tr, y_tr, x_va, y_va) > 95
    noise = linear_probe_accuracy(torch.randn(400, 16, generator=g), y_tr, torch.randn(200, 16, generator=g),
                                  y_va)
    assert noise < 40  # chance is 25
    out = probe_attributes(x_tr, dict(a=y_tr), x_va, dict(a=y_va))
    assert set(out) == {'a', 'mean'} and out['mean'] == out['a']


def test_probe_tool_on_gransynth(tmp_path):
    """End to end: pixels-level encoders read colour from GranSynth regions far above chance (16.7%)."""
    from granvit_mm.toy.gran_synth import generate, object_attributes
    assert object_attributes('a large red striped circle') == dict(size='large', colour='red',
                                                                   texture='striped', shape='circle')
    assert object_attributes('open cafe') is None
    root = str(tmp_path / 'synth')
    generate(root, num_train=60, num_val=30, ocr_fraction=0.0)
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
    try:
        import region_probe
    finally:
        sys.path.pop(0)
    res = region_probe.main(['--data-root', root,
                             '--config', osp.join(REPO, 'configs', 'granvit_pretrain_tiny.py'),
                             '--encoder', 'random', '--out', str(tmp_path / 'probe.json')])
    assert res['random']['colour'] > 60 and osp.isfile(tmp_path / 'probe.json')
