"""`transformers serve` (transformers 5.x, `make tf5-env`) in tests: the side environment, a server on
127.0.0.1 that the test starts and stops, and the answers the same export gives locally through processor +
generate. Used by tests/test_xtuner/test_serve_export.py and the data engine's HTTP-backend test."""
import contextlib
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import time
import urllib.request

from repo_tools import ROOT

TF5_PYTHON = os.environ.get('GRANVIT_TF5_PYTHON', osp.join(ROOT, '.venv-tf5', 'bin', 'python'))
NO_TF5 = f'no transformers 5.x environment at {TF5_PYTHON}: run `make tf5-env`'
DIRECT = '''
import json, sys, torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
export, image, questions, max_new_tokens = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
processor = AutoProcessor.from_pretrained(export, trust_remote_code=True)
model = LlavaForConditionalGeneration.from_pretrained(export).eval()
answers = []
for question in questions:
    prompt = processor.apply_chat_template([{'role': 'user', 'content': [{'type': 'image'},
                                            {'type': 'text', 'text': question}]}], add_generation_prompt=True)
    inputs = processor(images=Image.open(image), text=prompt, return_tensors='pt')
    ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answers.append(processor.decode(ids[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True))
print(json.dumps(answers))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tf5_env(tmp_path) -> dict:
    e = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    e.update(OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
             HF_MODULES_CACHE=str(tmp_path / 'modules'))
    return e


def local_answers(export: str, image_path: str, questions, tmp_path, max_new_tokens: int = 12):
    """The export's greedy answers to ``questions`` about the image file, through processor + generate."""
    direct = subprocess.run([TF5_PYTHON, '-c', DIRECT, export, image_path, json.dumps(list(questions)),
                             str(max_new_tokens)], env=tf5_env(tmp_path), capture_output=True, text=True,
                            timeout=300)
    assert direct.returncode == 0, direct.stderr[-3000:]
    return json.loads(direct.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def transformers_serve(export: str, tmp_path, startup_s: float = 180):
    """``transformers serve`` on a free 127.0.0.1 port: yields ``(base_url, process)`` once ``/health``
    answers; the process group is terminated on exit (its output is in ``tmp_path/serve.log``)."""
    port = free_port()
    cli = osp.join(osp.dirname(TF5_PYTHON), 'transformers')
    log = tmp_path / 'serve.log'
    with open(log, 'w') as out:
        server = subprocess.Popen([cli, 'serve', export, '--host', '127.0.0.1', '--port', str(port),
                                   '--trust-remote-code', '--device', 'cpu'], env=tf5_env(tmp_path),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}'
        deadline = time.time() + startup_s
        while True:
            try:
                urllib.request.urlopen(base + '/health', timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        yield base, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
