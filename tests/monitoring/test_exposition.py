"""Merging two processes' expositions into one (serve and its worker process)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadbell.monitoring.exposition import merge
from loadbell.monitoring.registry import Metrics


def test_merge_keeps_each_family_once_with_both_processes_samples() -> None:
    """Two registries with the same families merge into a text where every family is
    declared once (counters' _created series too) and holds the samples of both."""
    serve, worker = Metrics("serve-h-1"), Metrics("worker-h-2")
    serve.request("GET", "/healthz", 200, 0.001)
    worker.attempt("webhook", 1, "succeeded", 0.01)
    worker.claim(3, 0)
    text = merge(generate_latest(serve.registry), generate_latest(worker.registry)).decode()

    declared = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(declared) == len(set(declared)), "a family is declared twice"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    processes = {
        name: {s.labels.get("process") for s in families[name].samples}
        for name in ("loadbell_claims", "loadbell_database_errors", "loadbell_http_requests")
    }
    assert processes["loadbell_claims"] == {"serve-h-1", "worker-h-2"}
    assert processes["loadbell_database_errors"] == {"serve-h-1", "worker-h-2"}
    assert processes["loadbell_http_requests"] == {"serve-h-1"}
    delivered = [s for s in families["loadbell_deliveries"].samples if s.value > 0]
    assert [(s.labels["process"], s.labels["outcome"]) for s in delivered] == [
        ("worker-h-2", "delivered")
    ]
    created = {s.labels["process"] for s in families["loadbell_claims_created"].samples}
    assert created == {"serve-h-1", "worker-h-2"}


def test_worker_absent_says_worker_up_zero_until_it_answers() -> None:
    """While serve's worker process does not answer, serve reports loadbell_worker_up 0
    under its own name; once it answers, that sample is gone."""
    serve = Metrics("serve-h-1")
    serve.worker_absent(True)
    up = next(f for f in serve.registry.collect() if f.name == "loadbell_worker_up")
    assert [(s.labels["process"], s.value) for s in up.samples] == [("serve-h-1", 0.0)]
    serve.worker_absent(False)
    serve.worker_absent(False)  # twice: nothing left to remove, no error
    up = next(f for f in serve.registry.collect() if f.name == "loadbell_worker_up")
    assert up.samples == []
