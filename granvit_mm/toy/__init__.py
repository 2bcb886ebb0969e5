"""Generators of the embedded demo assets: GranSynth (data) and the tiny Qwen2 LLM.

They stand in for Gran-29M and Qwen2.5 so that every stage runs on a laptop, and feed the library through the
same loading code real assets take (Gran JSONL files, a Hugging Face model directory). Nothing in the library
imports this package.
"""
