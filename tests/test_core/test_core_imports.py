"""The shared contracts import nothing heavy: no registry, mmengine, mmcv, models, datasets or
transformers."""
import json
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FORBIDDEN = ('mmengine', 'mmcv', 'mmdet', 'mmpretrain', 'mmseg', 'xtuner', 'transformers', 'cv2',
             'granvit_mm.registry', 'granvit_mm.models', 'granvit_mm.datasets', 'granvit_mm.engine',
             'granvit_mm.evaluation', 'granvit_mm.structures', 'granvit_mm.toy')


def _imported_after(statement: str):
    code = f'import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))'
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_no_registry_models_or_datasets():
    mods = _imported_after('import granvit_mm.core; from granvit_mm.core import siglip_keys')
    bad = [m for m in mods if any(m == f or m.startswith(f + '.') for f in FORBIDDEN)]
    assert bad == [], f'granvit_mm.core pulled in {bad}'
    assert 'granvit_mm.core.chat_format' in mods and 'granvit_mm.core.gran_record' in mods


def test_package_import_is_light():
    mods = _imported_after('import granvit_mm')
    assert not any(m.startswith(('mmengine', 'torch', 'granvit_mm.registry')) for m in mods)


def test_one_definition_of_each_contract():
    """Stage-1 code uses the core's objects, not copies of them."""
    from granvit_mm.core import chat_format, prompts
    from granvit_mm.datasets import region_tasks
    from granvit_mm.models.heads import region_ar_head
    from granvit_mm.models.utils import packing
    assert packing.IMAGE_TOKEN_INDEX is chat_format.IMAGE_TOKEN_INDEX
    assert region_ar_head.ChatTemplateEncoder is chat_format.ChatTemplateEncoder
    assert region_tasks.bbox2caption_question is prompts.bbox2caption_question


def test_xtuner_agrees_with_the_core_token_ids():
    from xtuner.utils import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX

    from granvit_mm.core import chat_format
    assert (chat_format.DEFAULT_IMAGE_TOKEN, chat_format.IGNORE_INDEX, chat_format.IMAGE_TOKEN_INDEX) == \
        (DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX)
