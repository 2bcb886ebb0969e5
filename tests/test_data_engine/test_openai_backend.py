"""The OpenAI-compatible HTTP captioner against a stub server the test starts on 127.0.0.1 (the transformers
5.x ``transformers serve`` route needs its own environment; see docs/data_engine.md): prompts and images as
the server sees them, bounded retries, timeouts, refusals, and a dead server leaving the shard for the
rerun."""
import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image


class _Stub:
    """Answers chat completions: the region prompt's box text back, or 'a global caption'. ``fail`` is a list
    of HTTP codes to answer first; ``delay`` seconds before answering."""

    def __init__(self):
        self.fail, self.delay, self.seen = [], 0.0, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                stub.seen.append((self.path, body))
                if stub.fail:
                    code = stub.fail.pop(0)
                    self.send_response(code)
                    self.end_headers()
                    self.wfile.write(b'{"error": "busy"}')
                    return
                time.sleep(stub.delay)
                content = body['messages'][0]['content']
                url, text = content[0]['image_url']['url'], content[1]['text']
                img = Image.open(io.BytesIO(base64.b64decode(url.split(',', 1)[1])))
                answer = (f'box {text.split("coordinates ")[1].split(" in no")[0]} '
                          f'of a {img.width}x{img.height} '
                          'image seen by a model that talks far too much' if 'coordinates' in text
                          else 'a global caption')
                out = json.dumps(dict(choices=[dict(message=dict(role='assistant',
                                                                 content=answer))])).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/v1'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub():
    s = _Stub()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _backend(stub, **kw):
    from granvit_mm.data_engine import OpenAICaptioner
    return OpenAICaptioner(stub.url, 'tiny-vlm', **dict(dict(retry_wait=0.01, concurrency=2), **kw))


def test_prompts_images_and_retries(stub):
    img = np.zeros((50, 200, 3), np.uint8)
    stub.fail = [503, 429]
    out = _backend(stub, max_retries=2).caption([img], [np.array([[20, 5, 100, 45.]])], [True])
    glob, regions = out[0]
    assert glob == 'a global caption'
    assert regions == ['box [0.100, 0.100, 0.500, 0.900] of a 200x50 image seen by a model that talks '
                       'far too much']
    assert len(stub.seen) == 4 and all(p == '/v1/chat/completions' for p, _ in stub.seen)
    assert stub.seen[-1][1]['model'] == 'tiny-vlm' and stub.seen[-1][1]['temperature'] == 0.0


def test_timeouts_and_refusals_are_bounded(stub):
    from granvit_mm.data_engine.captioner import CaptionServiceError
    img = np.zeros((8, 8, 3), np.uint8)
    stub.delay = 1.0
    t0 = time.time()
    with pytest.raises(CaptionServiceError, match='no answer after 2 tries'):
        _backend(stub, max_retries=1, timeout=0.2, concurrency=1).caption([img], [np.zeros((0, 4))], [True])
    assert time.time() - t0 < 3
    stub.delay, stub.fail, stub.seen[:] = 0.0, [400], []
    with pytest.raises(CaptionServiceError, match='refused'):
        _backend(stub, max_retries=3).caption([img], [np.zeros((0, 4))], [True])
    assert len(stub.seen) == 1  # a 400 is not retried


def test_dead_server_leaves_the_shard_for_the_rerun(stub, synth_root, tmp_path):
    from granvit_mm.data_engine import run_engine
    from granvit_mm.data_engine.captioner import CaptionServiceError
    cfg = dict(shard_size=3, batch_size=3, stages=[
        dict(type='DecodeImages'),
        dict(type='CaptionRegions', max_region_words=6, backend=dict(
            type='OpenAICaptioner', base_url=stub.url, model='m', max_retries=1, retry_wait=0.01,
            timeout=5))])
    inp = tmp_path / 'in.jsonl'
    inp.write_text(''.join(open(f'{synth_root}/annotations/val.jsonl').readlines()[:5]))
    stub.fail = [500] * 1000  # the server is down
    with pytest.raises(CaptionServiceError):
        run_engine(cfg, str(inp), str(tmp_path / 'out'), img_root=f'{synth_root}/images', log=lambda s: None)
    stub.fail = []  # and back
    assert not (tmp_path / 'out' / 'stats' / 'part-00000.json').exists()
    m = run_engine(cfg, str(inp), str(tmp_path / 'out'), img_root=f'{synth_root}/images', log=lambda s: None)
    assert m['written'] == 5 and m['counts']['caption:region_captions_cut'] >= 5
    rec = json.loads(open(tmp_path / 'out' / 'gran' / 'part-00000.jsonl').readline())
    assert rec['provenance']['captions'] == 'openai:m'
    assert all(len(r['caption'].split()) <= 6 for r in rec['regions'] if r['kind'] == 'object')
