"""`transformers serve` (transformers 5.x's OpenAI-compatible server, `make tf5-env`) serves the export: an
OpenAI chat request with a base64 PNG and the Caption2Bbox prompt gets the answer the export gives through
processor + generate. The server binds 127.0.0.1 and is started and stopped here. Skips without the env."""
import base64
import io
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from stage2_assets import ROOT, save_export

from granvit_mm.core.prompts import caption2bbox_question

TF5_PYTHON = os.environ.get('GRANVIT_TF5_PYTHON', osp.join(ROOT, '.venv-tf5', 'bin', 'python'))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not osp.exists(TF5_PYTHON),
                                 reason=f'no transformers 5.x environment at {TF5_PYTHON}: '
                                        'run `make tf5-env`')]
QUESTION = caption2bbox_question('a small red circle')
DIRECT = '''
import sys, torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
export, image, question = sys.argv[1:4]
processor = AutoProcessor.from_pretrained(export, trust_remote_code=True)
model = LlavaForConditionalGeneration.from_pretrained(export).eval()
prompt = processor.apply_chat_template([{'role': 'user', 'content': [{'type': 'image'},
                                        {'type': 'text', 'text': question}]}], add_generation_prompt=True)
inputs = processor(images=Image.open(image), text=prompt, return_tensors='pt')
ids = model.generate(**inputs, max_new_tokens=12, do_sample=False)[0, inputs['input_ids'].shape[1]:]
print(repr(processor.decode(ids, skip_special_tokens=True)))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    e.update(OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
             HF_MODULES_CACHE=str(tmp_path / 'modules'))
    return e


def test_transformers_serve_answers_an_openai_chat_request(tiny_llm_dir, encoder_dir, tmp_path):
    from PIL import Image
    export = save_export(str(tmp_path / 'export'), tiny_llm_dir, encoder_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 114, 3), dtype=np.uint8))
    image.save(tmp_path / 'image.png')
    direct = subprocess.run([TF5_PYTHON, '-c', DIRECT, export, str(tmp_path / 'image.png'), QUESTION],
                            env=env(tmp_path), capture_output=True, text=True, timeout=300)
    assert direct.returncode == 0, direct.stderr[-3000:]
    expected = eval(direct.stdout.strip().splitlines()[-1]).strip()

    port = free_port()
    cli = osp.join(osp.dirname(TF5_PYTHON), 'transformers')
    server = subprocess.Popen([cli, 'serve', export, '--host', '127.0.0.1', '--port', str(port),
                               '--trust-remote-code', '--device', 'cpu'], env=env(tmp_path),
                              stdout=open(tmp_path / 'serve.log', 'w'), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}'
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(base + '/health', timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, \
                    (tmp_path / 'serve.log').read_text()[-3000:]
                time.sleep(1)
        buf = io.BytesIO()
        image.save(buf, 'PNG')
        url = 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()
        body = dict(model=export, max_tokens=12, temperature=0, messages=[{'role': 'user', 'content': [
            {'type': 'image_url', 'image_url': {'url': url}}, {'type': 'text', 'text': QUESTION}]}])
        req = urllib.request.Request(base + '/v1/chat/completions', json.dumps(body).encode(),
                                     {'Content-Type': 'application/json'})
        reply = json.loads(urllib.request.urlopen(req, timeout=300).read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    answer = reply['choices'][0]['message']['content'].strip()
    assert answer == expected and answer
    assert reply['usage']['prompt_tokens'] > 64  # the image's 64 visual tokens reached the LLM
