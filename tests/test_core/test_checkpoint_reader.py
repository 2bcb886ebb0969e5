"""The one checkpoint reader and work-dir resolver (granvit_mm/core/checkpoint_reader.py)."""
import os

import numpy as np
import pytest
import torch

from granvit_mm.core.checkpoint_reader import (UnsafeCheckpointError, checkpoint_iteration, find_checkpoint,
                                               read_checkpoint)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_weights_only_by_default_and_the_error_says_what_to_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'x': _Evil(str(marker))}}, path)
    advice = r'(?s)mmengine_to_safe_checkpoint\.py .*evil\.pth SAFE\.pth.*--trust-checkpoint'
    with pytest.raises(UnsafeCheckpointError, match=advice) as err:
        read_checkpoint(str(path))
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, ValueError)
    assert not marker.exists()


def test_trusted_is_the_one_opt_in(tmp_path):
    path = tmp_path / 'numpy_meta.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'rng': np.random.default_rng(0)}}, path)
    assert torch.equal(read_checkpoint(str(path), trusted=True)['state_dict']['w'], torch.ones(2))


def test_hf_directories_and_missing_files(tmp_path):
    from safetensors.torch import save_file
    save_file({'a': torch.zeros(3)}, str(tmp_path / 'model.safetensors'))
    assert torch.equal(read_checkpoint(str(tmp_path))['a'], torch.zeros(3))
    other = tmp_path / 'bin'
    other.mkdir()
    torch.save({'b': torch.ones(1)}, other / 'pytorch_model.bin')
    assert torch.equal(read_checkpoint(str(other))['b'], torch.ones(1))
    deepspeed_like = tmp_path / 'iter_4.pth'
    deepspeed_like.mkdir()
    with pytest.raises(UnsafeCheckpointError, match='DeepSpeed'):
        read_checkpoint(str(deepspeed_like))
    with pytest.raises(FileNotFoundError):
        read_checkpoint(str(tmp_path / 'nope.pth'))


def test_mmengine_reads_local_checkpoints_through_it(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader

    import granvit_mm.engine.checkpoint_io  # noqa: F401  (registers the scheme)
    path = tmp_path / 'pickled.pth'
    torch.save({'state_dict': {}, 'meta': {'rng': np.random.default_rng(0)}}, path)
    with pytest.raises(UnsafeCheckpointError, match='mmengine_to_safe_checkpoint'):
        CheckpointLoader.load_checkpoint(str(path))
    torch.save({'state_dict': {'w': torch.ones(1)}}, path)
    assert torch.equal(CheckpointLoader.load_checkpoint(str(path))['state_dict']['w'], torch.ones(1))


def test_iteration_numbers():
    assert checkpoint_iteration('/w/iter_1000.pth') == 1000
    assert checkpoint_iteration('best_bbox2caption_rouge_l_iter_5.pth') == 5
    assert checkpoint_iteration('/w/iter_12.pth/') == 12  # a DeepSpeed checkpoint folder
    assert checkpoint_iteration('granvit_tiny_siglip.pth') == -1


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    for it in (2, 4):
        torch.save({'state_dict': {}}, tmp_path / f'iter_{it}.pth')
    (tmp_path / 'iter_6.pth').write_bytes(b'truncated')
    (tmp_path / 'last_checkpoint').write_text('')  # a kill between open('w') and write()
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    assert find_checkpoint(str(tmp_path), check=False) == str(tmp_path / 'iter_6.pth')
    # a DeepSpeed folder counts once its model states are in it
    ds = tmp_path / 'iter_8.pth'
    ds.mkdir()
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    (ds / 'mp_rank_00_model_states.pt').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(ds))
    assert find_checkpoint(str(tmp_path)) == str(ds)
    assert find_checkpoint(str(tmp_path / 'absent')) is None
