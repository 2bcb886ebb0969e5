"""Missing-path errors and the checkpoint layout's names."""
import os

import pytest
import torch

from granvit_mm.core.checkpoint_layout import (PROJECTOR_PREFIX, STAGE1_VIT_PREFIXES, split_checkpoint,
                                               strip_prefix)
from granvit_mm.core.paths import MissingPathError, check_path


def test_check_path_returns_the_expanded_path(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / 'llm').mkdir()
    assert check_path(str(tmp_path / 'llm'), 'llm', 'run x') == str(tmp_path / 'llm')
    assert check_path('~/llm', 'llm', 'run x') == os.path.join(str(tmp_path), 'llm')


@pytest.mark.parametrize('path', [None, '', 'no/such/file.pth', '~/no/such/file.pth'])
def test_missing_path_says_what_and_how(path):
    with pytest.raises(MissingPathError) as err:
        check_path(path, 'model.llm_path', 'Run `make tiny-llm`.')
    assert str(err.value) == f'model.llm_path not found at {path!r}. Run `make tiny-llm`.'
    assert isinstance(err.value, FileNotFoundError)


def test_checkpoint_names():
    assert STAGE1_VIT_PREFIXES == {'student': 'backbone.', 'teacher': 'teacher.module.'}
    assert PROJECTOR_PREFIX == 'projector.'


def test_split_checkpoint_reads_both_layouts():
    a, b = torch.zeros(2), torch.ones(3)
    tensors, meta = split_checkpoint({'state_dict': {'backbone.w': a, 'step': 3}, 'meta': {'iter': 7},
                                      'optimizer': {'x': b}})
    assert list(tensors) == ['backbone.w'] and tensors['backbone.w'] is a
    assert meta == {'iter': 7}
    tensors, meta = split_checkpoint({'pos_embed': a, 'w': b, 'note': 'x'})  # a bare state dict
    assert list(tensors) == ['pos_embed', 'w'] and meta == {}
    src_meta = {'iter': 7}
    _, meta = split_checkpoint({'state_dict': {}, 'meta': src_meta})
    meta['iter'] = 8  # a copy
    assert src_meta == {'iter': 7}
    assert split_checkpoint({'state_dict': {'w': a}, 'meta': 'v1'})[1] == {}
    assert split_checkpoint({'state_dict': {'w': a}, 'meta': None})[1] == {}


def test_strip_prefix_keeps_only_that_prefix():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1, ), 2.0)
    state = {'backbone.w': a, 'teacher.module.w': b, 'backbone.layers.0.b': c, 'xbackbone.w': a}
    out = strip_prefix(state, 'backbone.')
    assert out == {'w': a, 'layers.0.b': c}
    assert strip_prefix(state, STAGE1_VIT_PREFIXES['teacher']) == {'w': b}
    assert strip_prefix(state, 'projector.') == {}
