"""Benchmarks of airflow-provider-portkey, each measured side by side with its baseline.

Run them all with ``python -m bench`` (see ``docs/benchmarks.md``). Every module exposes
``run(...) -> Result``; ``tests/bench`` runs each with a tiny N so they cannot rot.
"""
