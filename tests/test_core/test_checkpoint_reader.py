"""The one checkpoint reader and work-dir resolver (granvit_mm/core/checkpoint_reader.py)."""
import contextlib
import json
import locale
import os
import pickle

import numpy as np
import pytest
import torch

from granvit_mm.core.checkpoint_reader import (SAFE_CONVERTER, UnsafeCheckpointError, checkpoint_iteration,
                                               find_checkpoint, is_complete_dir, is_loadable, read_checkpoint,
                                               read_hf_config)


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


@contextlib.contextmanager
def _ascii_locale():
    """LC_CTYPE 'C': ``open()`` without an encoding then reads ASCII only (outside Python's UTF-8 mode)."""
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, 'C')
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, old)


def _gpu_saved(path, state):
    """``state`` saved as a GPU machine saves it (its storages tagged 'cuda:0'), on any machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.serialization, 'location_tag', lambda storage: 'cuda:0')
        torch.save(state, path)


def test_the_refusal_message_in_full(tmp_path):
    path = str(tmp_path / 'pickled.pth')
    torch.save({'state_dict': {}, 'meta': {'rng': np.random.default_rng(0)}}, path)
    with pytest.raises(pickle.UnpicklingError) as torch_err:
        torch.load(path, weights_only=True)
    first_line = str(torch_err.value).splitlines()[0]
    assert len(str(torch_err.value).splitlines()) > 1  # torch's text goes on with advice of its own
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value) == (
        f'{path}: torch refuses to load safely (weights_only=True): {first_line}. A plain MMEngine '
        f'checkpoint converts once into one that loads safely: python {SAFE_CONVERTER} {path} SAFE.pth. Only '
        'for a file whose origin you trust: pass trusted=True (--trust-checkpoint on the command line), '
        'which unpickles it in full and can run code in it.')
    with pytest.raises(FileNotFoundError, match=f'^checkpoint not found: {tmp_path / "nope.pth"}$'):
        read_checkpoint(str(tmp_path / 'nope.pth'))


def test_weights_only_also_when_the_environment_flips_torchs_default(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch unpickle in full wherever weights_only is not given."""
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': {'x': _Evil(str(marker))}}, path)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    for mmap in (False, True):
        with pytest.raises(UnsafeCheckpointError):
            read_checkpoint(path, mmap=mmap)
    assert not is_loadable(path)
    assert not marker.exists()


def test_map_location_is_honoured_and_gpu_checkpoints_load_on_the_cpu(tmp_path):
    path = str(tmp_path / 'iter_1.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}}, path)
    for kwargs in (dict(), dict(mmap=True), dict(trusted=True)):
        assert read_checkpoint(path, map_location='meta', **kwargs)['state_dict']['w'].is_meta
    gpu = str(tmp_path / 'gpu.pth')
    _gpu_saved(gpu, {'state_dict': {'w': torch.ones(2)}})
    for kwargs in (dict(), dict(mmap=True), dict(trusted=True)):
        assert read_checkpoint(gpu, **kwargs)['state_dict']['w'].device.type == 'cpu'
    assert is_loadable(gpu)


def test_mmap_maps_zip_files_and_reads_legacy_files_whole(tmp_path):
    path = str(tmp_path / 'iter_1.pth')
    torch.save({'w': torch.full((16, ), 3.0)}, path)
    mapped, whole = read_checkpoint(path, mmap=True)['w'], read_checkpoint(path)['w']
    data = open(path, 'rb').read()
    at = data.find(torch.full((16, ), 3.0).numpy().tobytes())
    with open(path, 'r+b') as f:  # the file changed in place: a mapped tensor shows it, a copy does not
        f.seek(at)
        f.write(torch.full((16, ), 7.0).numpy().tobytes())
    assert torch.equal(mapped, torch.full((16, ), 7.0)) and torch.equal(whole, torch.full((16, ), 3.0))
    legacy = str(tmp_path / 'legacy.pth')
    torch.save({'w': torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(legacy, mmap=True)['w'], torch.ones(2))
    assert is_loadable(legacy)  # torch's safe loader reads it (whole): a candidate like any other
    assert not is_loadable(str(tmp_path))


def test_sharded_safetensors_and_trusted_directories(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    sharded = tmp_path / 'sharded'
    sharded.mkdir()
    save_file({'a': torch.zeros(2), 'b': torch.ones(2)}, str(sharded / 'model-00001-of-00002.safetensors'))
    save_file({'c': torch.full((2, ), 2.0)}, str(sharded / 'model-00002-of-00002.safetensors'))
    index = {'metadata': {'total_size': 24}, 'weight_map': {
        'a': 'model-00001-of-00002.safetensors', 'b': 'model-00001-of-00002.safetensors',
        'c': 'model-00002-of-00002.safetensors'}}
    (sharded / 'model.safetensors.index.json').write_text(json.dumps(index))
    state = read_checkpoint(str(sharded))
    assert sorted(state) == ['a', 'b', 'c'] and torch.equal(state['c'], torch.full((2, ), 2.0))
    direct = read_checkpoint(str(sharded / 'model-00002-of-00002.safetensors'))  # a .safetensors file
    assert list(direct) == ['c']

    pickled = tmp_path / 'bin'
    pickled.mkdir()
    torch.save({'w': torch.ones(1), 'rng': np.random.default_rng(0)}, pickled / 'pytorch_model.bin')
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(str(pickled))
    assert torch.equal(read_checkpoint(str(pickled), trusted=True)['w'], torch.ones(1))

    deepspeed = tmp_path / 'iter_4.pth'
    deepspeed.mkdir()
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(str(deepspeed))
    assert str(err.value) == (
        f'{deepspeed} is a directory without model.safetensors / model.safetensors.index.json / '
        'pytorch_model.bin: a DeepSpeed checkpoint directory, which only full unpickling '
        '(weights_only=False) reads. Pass trusted=True (--trust-checkpoint) if you trust it.')
    import xtuner.model.utils
    read = []
    monkeypatch.setattr(xtuner.model.utils, 'guess_load_checkpoint',
                        lambda p: read.append(p) or {'w': torch.ones(1)}, raising=False)
    assert torch.equal(read_checkpoint(str(deepspeed), trusted=True)['w'], torch.ones(1))
    assert read == [str(deepspeed)]  # XTuner's reader, given the folder


def test_text_files_are_read_as_utf8_whatever_the_locale(tmp_path):
    from safetensors.torch import save_file
    model = tmp_path / 'modèle'
    model.mkdir()
    save_file({'a': torch.zeros(1)}, str(model / 'poids-é.safetensors'))
    (model / 'model.safetensors.index.json').write_text(
        json.dumps({'weight_map': {'a': 'poids-é.safetensors'}}, ensure_ascii=False), encoding='utf-8')
    (model / 'config.json').write_text(json.dumps({'name': 'modèle'}, ensure_ascii=False), encoding='utf-8')
    work = tmp_path / 'travail-é'
    work.mkdir()
    torch.save({'state_dict': {}}, work / 'iter_2.pth')
    torch.save({'state_dict': {}}, work / 'iter_3.pth')
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'), encoding='utf-8')
    with _ascii_locale():
        assert list(read_checkpoint(str(model))) == ['a']
        assert read_hf_config(str(model)) == {'name': 'modèle'}
        assert find_checkpoint(str(work)) == str(work / 'iter_2.pth')


def test_read_hf_config(tmp_path):
    assert read_hf_config(str(tmp_path)) == {}
    (tmp_path / 'config.json').write_text('{"model_type": "siglip", "hidden_size": 8}')
    assert read_hf_config(str(tmp_path)) == {'model_type': 'siglip', 'hidden_size': 8}


def test_iteration_of_a_folder_name():
    assert checkpoint_iteration('/w/iter_1000') == 1000  # a DeepSpeed folder named without .pth
    assert checkpoint_iteration('/w/epoch_7/') == 7


def test_fsdp_rank_folders_count_once_complete(tmp_path):
    folder = tmp_path / 'iter_3.pth'
    folder.mkdir()
    assert not is_complete_dir(str(folder))
    (folder / 'rank0.pth').write_bytes(b'')
    assert is_complete_dir(str(folder))
    torch.save({'state_dict': {}}, tmp_path / 'iter_2.pth')
    assert find_checkpoint(str(tmp_path)) == str(folder)


def test_pointer_of_a_moved_work_dir_and_an_empty_pointer(tmp_path):
    for it in (2, 5):
        torch.save({'state_dict': {}}, tmp_path / f'iter_{it}.pth')
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text('/elsewhere/old_work_dir/iter_2.pth')  # written before the work dir was moved here
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    # an empty pointer names nothing, not the work dir itself (even one that looks like a rank folder)
    pointer.write_text('')
    (tmp_path / 'rank0.pth').write_bytes(b'')
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_5.pth')


def test_prefer_best_for_inference(tmp_path):
    with pytest.raises(ValueError, match=r"^prefer must be 'last' or 'best', got 'newest'$"):
        find_checkpoint(str(tmp_path), prefer='newest')
    torch.save({'state_dict': {}}, tmp_path / 'iter_8.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    assert find_checkpoint(str(tmp_path), prefer='best') == str(tmp_path / 'iter_8.pth')  # no best_*: last
    torch.save({'state_dict': {}}, tmp_path / 'best_acc_iter_4.pth')
    torch.save({'state_dict': {}}, tmp_path / 'best_acc_iter_6.pth')
    (tmp_path / 'best_acc_iter_7.pth').write_bytes(b'truncated')
    assert find_checkpoint(str(tmp_path), prefer='best') == str(tmp_path / 'best_acc_iter_6.pth')
    assert find_checkpoint(str(tmp_path), prefer='best', check=False) == str(tmp_path / 'best_acc_iter_7.pth')
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_8.pth')  # 'last' ignores best_*

    other = tmp_path / 'released'
    other.mkdir()
    assert find_checkpoint(str(other), prefer='best') is None
    torch.save({'state_dict': {}}, other / 'granvit_tiny.pth')  # any *.pth is inference's last resort
    (other / 'broken.pth').write_bytes(b'')
    assert find_checkpoint(str(other), prefer='best') == str(other / 'granvit_tiny.pth')
    assert find_checkpoint(str(other), prefer='last') is None  # but never what --resume takes
    torch.save({'state_dict': {}}, other / 'iter_3.pth')
    assert find_checkpoint(str(other), prefer='best') == str(other / 'iter_3.pth')  # numbered before any
