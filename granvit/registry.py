"""``granvit.registry`` for MMEngine's scope auto-import; see ``granvit/__init__.py``."""
from granvit_mm.registry import *  # noqa: F401,F403
