"""Test-wide settings: deterministic, offline, and quiet on a small shared CPU machine."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


def pytest_runtest_setup(item):
    """Drop log-file handlers that a finished Runner closed.

    MMEngine keeps every MMLogger alive for the process; a Runner built in one test closes its log file at
    the end, and the next ``init_weights`` anywhere writes its init table to that closed handler
    (``'NoneType' object has no attribute 'write'``). Runs before each test's fixtures are set up.
    """
    import logging
    import sys
    if 'mmengine' not in sys.modules:
        return
    from mmengine.logging import MMLogger
    for logger in list(MMLogger._instance_dict.values()):
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler) and handler.stream is None:
                logger.removeHandler(handler)
