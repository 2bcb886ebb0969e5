"""The demo served on a free localhost port by a test, and stopped when the test is done."""
import socket
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextmanager
def demo_server(inferencer, out_dir, **build_kwargs):
    """The demo on ``inferencer``, served on a free 127.0.0.1 port in this process until the block ends."""
    from granvit_mm.webui import DemoBackend, build_demo, launch_demo, prepare_environment
    cache = prepare_environment(str(out_dir))
    demo = build_demo(DemoBackend(inferencer, label='test'), **build_kwargs)
    port = free_port()
    launch_demo(demo, port=port, block=False, quiet=True)
    try:
        yield dict(url=f'http://127.0.0.1:{port}/', demo=demo, cache=cache, inferencer=inferencer)
    finally:
        demo.close()
