"""The GranViT web demo (Gradio, an optional extra: ``pip install -r requirements/demo.txt``).

``tools/web_demo.py`` starts it; :class:`DemoBackend` holds the actions (no Gradio needed),
:func:`build_demo` the page, :func:`launch_demo` the safe launch settings.
"""
from .backend import DemoBackend, DemoError
from .server import DEFAULT_DEMO_PIXELS, DEFAULT_HOST, DEFAULT_MAX_FILE_SIZE, launch_demo, prepare_environment


def build_demo(*args, **kwargs):
    from .app import build_demo as _build
    return _build(*args, **kwargs)


__all__ = ['DemoBackend', 'DemoError', 'build_demo', 'launch_demo', 'prepare_environment', 'DEFAULT_HOST',
           'DEFAULT_MAX_FILE_SIZE', 'DEFAULT_DEMO_PIXELS']
