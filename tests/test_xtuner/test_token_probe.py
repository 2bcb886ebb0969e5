"""tools/analysis_tools/token_probe.py: the read-out that asks whether frozen tokens carry the named box."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch
from repo_tools import load_tool

probe = load_tool('tools/analysis_tools/token_probe.py')


@pytest.fixture(scope='module')
def synth_dir(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    out = str(tmp_path_factory.mktemp('gran_synth'))
    generate(out, num_train=6, num_val=3, image_size=96, seed=3)
    return out


def test_regions_are_read_with_boxes_relative_to_the_padded_square(synth_dir):
    pixels, regions = probe.load(synth_dir, 'val', 64)
    with open(osp.join(synth_dir, 'annotations', 'val.jsonl')) as f:
        records = [json.loads(line) for line in f]
    assert pixels.shape == (len(records), 3, 64, 64)
    want = [(i, r['caption'].split(), np.asarray(r['bbox']) / max(rec['width'], rec['height']))
            for i, rec in enumerate(records) for r in rec['regions']]
    assert len(regions) == len(want)
    for (i, words, box, _), (wi, wwords, wbox) in zip(regions, want):
        assert (i, words) == (wi, wwords)
        np.testing.assert_allclose(box, wbox, rtol=1e-6)


def test_probe_places_boxes_only_from_the_tokens():
    m = probe.Probe(vocab=5, dim=8, n_tokens=4, learned_position=False)
    vis = torch.randn(2, 4, 8)
    words, offsets = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2])
    box = m(vis, words, offsets)
    assert box.shape == (2, 4) and bool((box[:, 2:] > box[:, :2]).all())
    # the same tokens in another order give the same box: no position unless the tokens carry it
    torch.testing.assert_close(m(vis[:, [3, 1, 0, 2]], words, offsets), box)
    assert probe.Probe(5, 8, 4, learned_position=True).pos.shape == (4, 8)


def test_cli_trains_and_scores(synth_dir, encoder_dir, capsys):
    probe.main(['--data-root', synth_dir, '--tower', encoder_dir, '--iters', '4', '--position', 'fixed'])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r'iter 4: train loss \d+\.\d+  val Acc@0\.5 \d+\.\d \(', line), line
