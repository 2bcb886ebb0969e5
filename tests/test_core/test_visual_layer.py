"""The visual-layer contract's arithmetic and errors, without a model (tests/test_xtuner/test_visual_tokens.py
checks that the three frameworks then pick the same tensor)."""
import pytest

from granvit_mm.core import visual_tokens as vt


def test_layer_numbers_map_to_granvit_blocks():
    assert vt.granvit_out_index() == -1
    assert vt.granvit_token_kwargs() == dict(out_indices=-1, final_norm=False)
    assert vt.hf_llava_kwargs() == dict(vision_feature_layer=-1, vision_feature_select_strategy='full')
    assert vt.granvit_token_kwargs(1) == dict(out_indices=0, final_norm=False)
    assert vt.granvit_token_kwargs(12) == dict(out_indices=11, final_norm=False)
    assert vt.hf_llava_kwargs(-2) == dict(vision_feature_layer=-2, vision_feature_select_strategy='full')
    assert vt.check_layer(-3) == -3 and vt.check_layer(5) == 5
    for call in (vt.granvit_out_index, vt.granvit_token_kwargs, vt.hf_llava_kwargs):
        with pytest.raises(ValueError):
            call(0)


def test_select_range_is_the_hidden_states_tuple():
    hidden = ['emb', 'b1', 'b2', 'b3']
    assert [vt.select_visual_tokens(hidden, i) for i in (-4, -1, 1, 3)] == ['emb', 'b3', 'b1', 'b3']
    assert vt.select_visual_tokens(hidden) == 'b3'
    for bad in (4, -5):
        with pytest.raises(IndexError) as err:
            vt.select_visual_tokens(hidden, bad)
        assert str(err.value) == f'visual layer {bad} out of range for 4 hidden states (3 blocks)'
    with pytest.raises(ValueError):
        vt.select_visual_tokens(hidden, 0)


def test_errors_say_what_to_give():
    with pytest.raises(ValueError) as err:
        vt.check_layer(0)
    assert str(err.value) == ('visual layer 0 is the patch embedding output (hidden_states[0]); use a block: '
                              '-1 = last block (default), -2 = the one before, or 1..num_layers')
    with pytest.raises(TypeError) as err:
        vt.check_layer(-1.0)
    assert str(err.value) == 'visual layer must be an int (HF hidden_states index), got -1.0'


def test_token_count_is_a_whole_patch_grid():
    assert vt.num_visual_tokens(512, 16) == 1024 and vt.num_visual_tokens(31, 8) == 9
    n = vt.num_visual_tokens(64.0, 16.0)  # sizes read from a config may be floats
    assert n == 16 and type(n) is int
    assert type(vt.num_visual_tokens(64, 16.0)) is int and type(vt.num_visual_tokens(64.0, 16)) is int
