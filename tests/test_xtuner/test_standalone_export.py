"""The transformers export is self-contained: its image processor needs neither granvit_mm nor OpenCV,
computes core's pixels, takes images the ways transformers' processors do, and the model stops at the end of
the turn.

The export is loaded in a subprocess where granvit_mm, granvit and cv2 are unimportable, with the
pinned transformers 4.48 and -- where `make tf5-env` has been run -- with transformers 5.x.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from stage2_assets import ROOT, build_llava, sample_images

from granvit_mm.core.image_input import to_model_input
from granvit_mm.core.prompts import caption2bbox_question, global_caption_question

HELPER = osp.join(osp.dirname(osp.abspath(__file__)), 'export_answers.py')
QUESTIONS = [global_caption_question(), caption2bbox_question('a small red circle')]
BLOCKED = 'granvit_mm,granvit,cv2'
TF5_PYTHON = os.environ.get('GRANVIT_TF5_PYTHON', osp.join(ROOT, '.venv-tf5', 'bin', 'python'))


def images():
    """Non-square images smaller and larger than the tower's 64 px (area shrink and bicubic growth)."""
    return sample_images() + [np.random.default_rng(1).integers(0, 256, (20, 33, 3), dtype=np.uint8)]


@pytest.fixture(scope='module')
def export(tiny_llm_dir, encoder_dir, tmp_path_factory):
    """(export dir, the XTuner model's greedy answers) for a stage-2 model with a moved projector."""
    from transformers import AutoTokenizer

    from granvit_mm.xtuner.hf_llava import to_hf_llava
    from granvit_mm.xtuner.llava_model import greedy_answers
    model = build_llava(tiny_llm_dir, encoder_dir).eval()
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    pixels = torch.stack([torch.from_numpy(to_model_input(im, 64)[0]) for im in images()])
    expected = greedy_answers(model, tokenizer, pixels, [QUESTIONS] * len(images()), max_new_tokens=12)
    hf, processor = to_hf_llava(model, tokenizer)
    out = tmp_path_factory.mktemp('export')
    hf.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out), expected


def run_isolated(python: str, export_dir: str, tmp_path) -> dict:
    """The helper in ``python`` with granvit_mm / cv2 blocked, outside the repo, fresh module cache."""
    np.savez(tmp_path / 'images.npz', **{f'{i:02d}': im for i, im in enumerate(images())})
    (tmp_path / 'questions.json').write_text(json.dumps(QUESTIONS))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               HF_MODULES_CACHE=str(tmp_path / 'modules'))
    proc = subprocess.run([python, HELPER, export_dir, str(tmp_path / 'images.npz'),
                           str(tmp_path / 'questions.json'), str(tmp_path / 'out.json'), '--block', BLOCKED],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / 'out.json').read_text())


def check_isolated_run(result: dict, expected, export_dir: str):
    assert result['answers'] == expected
    assert any(a for answers in expected for a in answers)
    # lmms-eval's llava_hf passes eos_token_id=tokenizer.eos_token_id: it must stop where the turn ends too
    assert result['lmms_style'] == result['answers']
    assert result['eos_token'] == '<|im_end|>'
    ref = np.stack([to_model_input(im, 64)[0] for im in images()])
    for form, rows in result['pixels'].items():  # every input form gives core's pixels
        got = np.concatenate([np.asarray(r, np.float32) for r in rows])
        np.testing.assert_array_equal(got, ref, err_msg=form)


def test_standalone_source_needs_no_project_or_opencv(export):
    export_dir, _ = export
    text = open(osp.join(export_dir, 'image_processor.py')).read()
    assert 'granvit_mm' not in text.replace('granvit_mm.xtuner.image_processor.standalone_source', '') \
        .replace('granvit_mm/core/', '')
    assert 'cv2' not in text and 'import torch' not in text
    from granvit_mm.xtuner.image_processor import standalone_source
    assert text == standalone_source()  # the saved file is the generated one, not a copy of the module


def test_export_loads_and_answers_without_granvit_mm(export, tmp_path):
    export_dir, expected = export
    result = run_isolated(sys.executable, export_dir, tmp_path)
    assert result['transformers'].startswith('4.48')
    check_isolated_run(result, expected, export_dir)


def test_export_answers_the_same_in_transformers_5(export, tmp_path):
    if not osp.exists(TF5_PYTHON):
        pytest.skip(f'no transformers 5.x environment at {TF5_PYTHON}: run `make tf5-env` '
                    '(or set GRANVIT_TF5_PYTHON)')
    export_dir, expected = export
    result = run_isolated(TF5_PYTHON, export_dir, tmp_path)
    assert result['transformers'].startswith('5.')
    check_isolated_run(result, expected, export_dir)


def test_generation_config_stops_at_the_end_of_turn(export):
    from transformers import AutoTokenizer, GenerationConfig
    export_dir, _ = export
    tok = AutoTokenizer.from_pretrained(export_dir)
    gen = GenerationConfig.from_pretrained(export_dir)
    end_of_turn = tok.convert_tokens_to_ids('<|im_end|>')
    assert end_of_turn in gen.eos_token_id and tok.eos_token_id == end_of_turn
    assert tok.pad_token == '<|endoftext|>'  # padding is not the end of a turn


@pytest.mark.parametrize('make', [
    lambda im: im[None],  # a (1, H, W, 3) batch: what `transformers serve` sends
    lambda im: [im, im],
    lambda im: [[im], [im]],
    lambda im: torch.from_numpy(im).permute(2, 0, 1),
    lambda im: np.concatenate([im, np.full(im.shape[:2] + (1,), 255, np.uint8)], axis=-1),  # RGBA
])
def test_processor_accepts_transformers_input_forms(make):
    from granvit_mm.xtuner.image_processor import GranViTImageProcessor
    im = images()[0]
    out = GranViTImageProcessor(size=64)(make(im), return_tensors='np')['pixel_values']
    assert out.shape[1:] == (3, 64, 64)
    for row in out:
        np.testing.assert_array_equal(row, to_model_input(im, 64)[0])


def test_processor_refuses_what_is_not_an_image():
    from granvit_mm.xtuner.image_processor import GranViTImageProcessor
    proc = GranViTImageProcessor(size=64)
    for bad, match in [(np.zeros((2, 3, 4, 5, 3), np.uint8), 'cannot read an image'),
                       (np.zeros((8, 8, 7), np.uint8), 'expected an image'), ([], 'no image')]:
        with pytest.raises(ValueError, match=match):
            proc(bad)
