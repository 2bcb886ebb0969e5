"""Test-wide settings: deterministic, offline, and quiet on a small shared CPU machine."""
import copy
import json
import os
import sys

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


_SCOPES = pytest.StashKey()


def pytest_collection_modifyitems(config, items):
    """Under mutation testing, the fastest tests first: mutmut passes a mutant's tests in no set order,
    with ``-x``, so a mutant a unit test kills would otherwise often pay first for an engine or training
    run. ``GRANVIT_FAST_TESTS_FIRST`` (mutmut's stats file) is set only by mutation_test.py."""
    stats = os.environ.get('GRANVIT_FAST_TESTS_FIRST')
    if not stats or not os.path.isfile(stats):
        return
    with open(stats, encoding='utf-8') as f:
        durations = json.load(f).get('duration_by_test', {})
    items.sort(key=lambda item: durations.get(item.nodeid, float('inf')))


def pytest_runtest_setup(item):
    """Note MMEngine's default scopes (put back after the test); drop log handlers a finished Runner closed.

    MMEngine keeps every MMLogger alive for the process; a Runner built in one test closes its log file at
    the end, and the next ``init_weights`` anywhere writes its init table to that closed handler
    (``'NoneType' object has no attribute 'write'``). Runs before each test's fixtures are set up.
    """
    import logging
    if 'mmengine' not in sys.modules:
        return
    from mmengine.registry import DefaultScope
    item.stash[_SCOPES] = copy.copy(DefaultScope._instance_dict)
    from mmengine.logging import MMLogger
    for logger in list(MMLogger._instance_dict.values()):
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler) and handler.stream is None:
                logger.removeHandler(handler)


def pytest_runtest_teardown(item):
    """Put MMEngine's global default scope back as the test found it: builders of other libraries set it for
    the whole process (mmdet's ``DetInferencer`` to ``mmdet``, mmpretrain's configs to ``mmpretrain``), and a
    later test's builds must not depend on which tests ran before it."""
    saved = item.stash.get(_SCOPES, None)
    if saved is not None:
        from mmengine.registry import DefaultScope
        DefaultScope._instance_dict = saved
