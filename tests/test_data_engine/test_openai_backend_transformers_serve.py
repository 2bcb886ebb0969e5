"""The data engine's OpenAI-compatible captioner against a real `transformers serve` (transformers 5.x, `make
tf5-env`) serving a tiny transformers LLaVA export built here: the global and region captions it gets back are
the answers the same export gives locally through processor + generate to the same prompts about the same
image bytes. The engine sends the whole image with the box as text in the prompt (no crop, no drawn box), as
a JPEG data URL, so the local run reads that very JPEG. The server binds 127.0.0.1 and is started and stopped
here. Skips without the env."""
import base64
import os.path as osp
import sys
import urllib.request

import numpy as np
import pytest
from tf5_serve import NO_TF5, TF5_PYTHON, local_answers, transformers_serve

sys.path.append(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_xtuner'))
pytestmark = pytest.mark.skipif(not osp.exists(TF5_PYTHON), reason=NO_TF5)
MAX_TOKENS = 12


@pytest.fixture(scope='module')
def export(tmp_path_factory):
    from stage2_assets import make_stage1_checkpoint, make_tiny_llm, save_export

    from granvit_mm.xtuner.encoder import export_encoder
    llm = make_tiny_llm(str(tmp_path_factory.mktemp('tiny_llm')))
    encoder = str(tmp_path_factory.mktemp('hf_encoder'))
    stage1 = make_stage1_checkpoint(str(tmp_path_factory.mktemp('stage1') / 'iter_1.pth'), llm)
    export_encoder(stage1, encoder)
    return save_export(str(tmp_path_factory.mktemp('export')), llm, encoder)


def test_openai_captioner_against_transformers_serve(export, tmp_path):
    from granvit_mm.data_engine.captioner import OpenAICaptioner, clean_text
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((96, 128, 3), (80, 60, 3))]
    boxes = [np.array([[8, 4, 64, 50], [70, 30, 120, 90.]]), np.array([[0, 0, 30, 40], [10, 20, 55, 75.]])]
    want_global = [True, False]

    with transformers_serve(export, tmp_path) as (base, server):
        # the model name the server expects: the path it was started with (it loads the model a request names)
        backend = OpenAICaptioner(base + '/v1', export, max_tokens=MAX_TOKENS, timeout=120, max_retries=0)
        answers = backend.caption(images, boxes, want_global)
    assert server.poll() is not None  # stopped, and its port is closed
    with pytest.raises(OSError):
        urllib.request.urlopen(base + '/health', timeout=5)
    served = (tmp_path / 'serve.log').read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')
    assert served == 1 + 2 + 2  # one request a question: the global caption and the four regions

    expected = []
    for i, (im, bx) in enumerate(zip(images, boxes)):
        jpeg = tmp_path / f'sent{i}.jpg'  # exactly the bytes the engine sent
        jpeg.write_bytes(base64.b64decode(backend._data_url(im).split(',', 1)[1]))
        questions = ([backend.global_prompt] if want_global[i] else []) + [
            backend.region_question(b, im.shape[1], im.shape[0]) for b in bx]
        local = [clean_text(a) for a in local_answers(export, str(jpeg), questions, tmp_path, MAX_TOKENS)]
        expected.append((local[0] if want_global[i] else None, local[int(want_global[i]):]))
    # Exact equality checks the chat template, the prompts, max_tokens (the global answer is cut at 12 tokens)
    # and the text clean-up. It barely checks the pixels: this tiny export answers a horizontally flipped
    # image the same way (measured), so the image path is checked by test_openai_backend.py's stub (the
    # decoded image) and test_serve_export.py (the visual tokens reach the LLM).
    assert answers == expected
    assert answers[1][0] is None
    texts = [answers[0][0]] + answers[0][1] + answers[1][1]
    assert all(isinstance(t, str) and t for t in texts), texts
