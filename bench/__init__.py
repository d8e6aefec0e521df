"""Benchmarks: each module compares webseed with a real tool in the same run.

Run all with ``make bench`` or one with ``python -m bench NAME``. Each prints a
table and writes JSON under ``bench/results/``.
"""
