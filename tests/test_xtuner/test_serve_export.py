"""`transformers serve` (transformers 5.x's OpenAI-compatible server, `make tf5-env`) serves the export: an
OpenAI chat request with a base64 PNG and the Caption2Bbox prompt gets the answer the export gives through
processor + generate. The server binds 127.0.0.1 and is started and stopped here. Skips without the env."""
import base64
import io
import json
import os.path as osp
import urllib.request

import numpy as np
import pytest
from stage2_assets import save_export
from tf5_serve import NO_TF5, TF5_PYTHON, local_answers, transformers_serve

from granvit_mm.core.prompts import caption2bbox_question

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not osp.exists(TF5_PYTHON), reason=NO_TF5)]
QUESTION = caption2bbox_question('a small red circle')


def test_transformers_serve_answers_an_openai_chat_request(tiny_llm_dir, encoder_dir, tmp_path):
    from PIL import Image
    export = save_export(str(tmp_path / 'export'), tiny_llm_dir, encoder_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 114, 3), dtype=np.uint8))
    image.save(tmp_path / 'image.png')
    expected = local_answers(export, str(tmp_path / 'image.png'), [QUESTION], tmp_path)[0].strip()

    with transformers_serve(export, tmp_path) as (base, _):
        buf = io.BytesIO()
        image.save(buf, 'PNG')
        url = 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()
        body = dict(model=export, max_tokens=12, temperature=0, messages=[{'role': 'user', 'content': [
            {'type': 'image_url', 'image_url': {'url': url}}, {'type': 'text', 'text': QUESTION}]}])
        req = urllib.request.Request(base + '/v1/chat/completions', json.dumps(body).encode(),
                                     {'Content-Type': 'application/json'})
        reply = json.loads(urllib.request.urlopen(req, timeout=300).read())
    answer = reply['choices'][0]['message']['content'].strip()
    assert answer == expected and answer
    assert reply['usage']['prompt_tokens'] > 64  # the image's 64 visual tokens reached the LLM
