"""Benchmarks behind `recsys bench ...`: each writes its figures and the command that produced them
into BENCHMARKS.md (markdown.py)."""
