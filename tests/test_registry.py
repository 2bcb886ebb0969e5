import subprocess
import sys

import pytest


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_scoped_type_resolves_without_custom_imports(scope):
    """A fresh interpreter that never imported granvit_mm resolves 'granvit.*' from another library's
    scope."""
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


def test_granvit_scope_fills_every_registry_without_imports():
    """One way the registries get filled: each lists its modules (``locations``); a config with
    default_scope='granvit' and no custom_imports finds every project type in a fresh interpreter."""
    code = (
        'from mmengine.registry import (DATA_SAMPLERS, DATASETS, HOOKS, METRICS, MODELS, OPTIM_WRAPPERS,\n'
        '                               OPTIM_WRAPPER_CONSTRUCTORS, STRATEGIES, TRANSFORMS)\n'
        'def get(root, name):  # what build_from_cfg does under default_scope=granvit\n'
        "    with root.switch_scope_and_registry('granvit') as reg:\n"
        '        return reg.get(name)\n'
        "assert 'granvit_mm.models' not in __import__('sys').modules\n"
        "names = [(MODELS, 'GranViTPretrainer'), (MODELS, 'RegionDistillLoss'), (DATASETS, 'GranDataset'),\n"
        "         (DATA_SAMPLERS, 'EpochTaggedSampler'), (TRANSFORMS, 'PackGranInputs'),\n"
        "         (HOOKS, 'DistillScheduleHook'), (METRICS, 'RegionCaptionMetric'),\n"
        "         (OPTIM_WRAPPER_CONSTRUCTORS, 'BackboneLayerDecayOptimWrapperConstructor'),\n"
        "         (OPTIM_WRAPPERS, 'DeepSpeedTeacherOptimWrapper'), (STRATEGIES, 'GranViTFSDPStrategy')]\n"
        "missing = [n for reg, n in names if get(reg, n) is None]\n"
        "assert not missing, missing\n"
        'print("ok")\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-2000:]
