"""Alias package for the ``granvit`` registry scope.

MMEngine resolves a scoped type such as ``type='granvit.GranViT'`` by importing ``<scope>.registry``. Our
distribution is ``granvit_mm``, so this package makes ``granvit.registry`` exist and configs work without
``custom_imports``. Import ``granvit_mm`` in code; nothing else lives here.
"""
