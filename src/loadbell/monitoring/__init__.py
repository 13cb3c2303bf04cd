"""Prometheus metrics: what each process counts (``registry.py``) and how it is served
(``exposition.py``). docs/metrics.md lists every metric."""
