from . import registry  # noqa: F401  (so custom_imports=['granvit_mm'] fills the granvit scope)
from .version import __version__  # noqa: F401
