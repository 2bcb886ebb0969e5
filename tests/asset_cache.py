"""Session-wide test assets, optionally built once across pytest sessions (mutation testing, docs/testing.md).

With ``GRANVIT_TEST_ASSETS=<folder>`` an asset is built once into that folder and reused by later sessions:
set only by tools/analysis_tools/mutation_test.py for groups whose mutated files do not build the assets,
where each mutant is a new pytest session that would otherwise spend seconds rebuilding them. Without it
(CI) each session builds its own in a temporary folder. Importable from any test (the root conftest's folder).
"""
import json
import os
import os.path as osp
import shutil


def cached_asset(tmp_path_factory, name: str, build):
    """``build(folder)`` -> a JSON-able value (paths inside the folder), into a fresh temporary folder or once
    into the cache, whose ``.built.json`` (written last) keeps the value."""
    cache = os.environ.get('GRANVIT_TEST_ASSETS')
    if not cache:
        return build(str(tmp_path_factory.mktemp(name)))
    out = osp.join(cache, name)
    done = osp.join(out, '.built.json')
    if not osp.exists(done):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        value = build(out)
        with open(done, 'w', encoding='utf-8') as f:
            json.dump(value, f)
    with open(done, encoding='utf-8') as f:
        return json.load(f)
