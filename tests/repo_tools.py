"""Scripts under tools/ as modules, for tests that call their functions (tools/ is not a package).

Importable from any test: pytest puts this folder on ``sys.path`` with the root ``conftest.py``.
"""
import importlib.util
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(rel_path: str, name: str = None):
    """The module of ``ROOT/rel_path`` (e.g. ``'tools/infer.py'``), executed afresh under ``name``."""
    name = name or osp.splitext(osp.basename(rel_path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
