"""granvit_mm: GranViT for the OpenMMLab ecosystem.

Importing the package loads nothing heavy: ``granvit_mm.core`` holds the shared contracts, and the
``granvit`` registry scope fills itself on first use (``granvit_mm.registry`` lists where each registry's
modules live), so ``type='granvit.GranViT'`` works in any OpenMMLab config without imports.
"""
from .version import __version__  # noqa: F401
