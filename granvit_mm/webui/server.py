"""Start the demo safely: localhost only unless told, no share link unless asked, capped uploads and pixels,
and only the demo's own output folder readable through the server.

Gradio serves files only from its upload/cache folder, ``allowed_paths`` and static paths; the cache folder is
set to ``<out_dir>/gradio`` (``GRADIO_TEMP_DIR``, before Gradio is imported) and ``allowed_paths`` is empty,
so nothing else on the machine (the repo, checkpoints, ``/etc``) can be fetched through ``/file=``.
"""
import os
import os.path as osp
from typing import Optional

DEFAULT_HOST = '127.0.0.1'
DEFAULT_MAX_FILE_SIZE = '10mb'
DEFAULT_DEMO_PIXELS = 16_000_000


def prepare_environment(out_dir: str) -> str:
    """Point Gradio's cache at ``out_dir/gradio`` and switch its telemetry off; call before importing
    gradio."""
    cache = osp.abspath(osp.join(out_dir, 'gradio'))
    os.makedirs(cache, exist_ok=True)
    os.environ['GRADIO_TEMP_DIR'] = cache
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    return cache


def launch_demo(demo, host: str = DEFAULT_HOST, port: Optional[int] = None, share: bool = False,
                max_file_size: str = DEFAULT_MAX_FILE_SIZE, block: bool = True, quiet: bool = False):
    """``demo.launch`` with the safe settings; ``block=False`` returns at once (tests)."""
    from .app import CSS, theme
    demo.queue(max_size=32)  # the model's events serialise themselves (app.MODEL_QUEUE)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_file_size,
                       allowed_paths=[], show_error=False, ssr_mode=False, mcp_server=False,
                       prevent_thread_lock=not block, quiet=quiet, inbrowser=False, theme=theme(), css=CSS,
                       footer_links=['gradio', 'settings'])
