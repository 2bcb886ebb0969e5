import subprocess
import sys

import pytest


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_scoped_type_resolves_without_custom_imports(scope):
    """A fresh interpreter that never imported granvit_mm resolves 'granvit.*' from another library's scope."""
    code = (
        f'from {scope}.registry import MODELS, HOOKS\n'
        f'from mmengine.registry import init_default_scope\n'
        f'init_default_scope({scope!r})\n'
        "cls = MODELS.get('granvit.GranViT')\n"
        "assert cls is not None and cls.__module__.startswith('granvit_mm.models'), cls\n"
        "assert HOOKS.get('granvit.WeightsOnlyCheckpointHook') is not None\n"
        'print("ok")\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-2000:]


def test_custom_imports_fill_the_registries():
    from mmengine.config import Config
    from mmengine.registry import MODELS
    cfg = Config(dict(custom_imports=dict(imports=['granvit_mm'], allow_failed_imports=False)))
    from mmengine.utils import import_modules_from_strings
    import_modules_from_strings(**cfg.custom_imports)
    assert MODELS.get('granvit.GranViT') is not None
