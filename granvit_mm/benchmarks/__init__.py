"""Benchmarks through lmms-eval (the paper's evaluation protocol): local copies of benchmark data in the form
lmms-eval's tasks load, the task hooks those copies name, and the Table-1 layout of the scores.

Imports nothing itself. ``lmms_tasks`` runs inside lmms-eval's own environment (``make lmms-eval-env``), so it
needs only ``granvit_mm.core`` (and lmms-eval's own scoring); ``lmms_data`` writes the copies (``datasets``);
``table`` reads lmms-eval result files.
"""
