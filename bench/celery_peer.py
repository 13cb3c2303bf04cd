"""The Celery peer of ``bench/api_path.py``: a task that POSTs one notification.

What a team would write instead of loadbell: enqueue a task per notification on Redis, and
let a Celery worker POST it to the receiver. The worker process is started by the bench:

    celery -A bench.celery_peer worker --queue Q --concurrency 2 ...

The broker is ``LOADBELL_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), read at
import time because Celery's worker imports this module to find the app. No result backend:
the receiver is where arrivals are counted. Each worker process keeps one HTTP session, so
connections are reused (this makes the peer faster, never slower, than a bare
``requests.post`` per task).
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery

BROKER = os.environ.get("LOADBELL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("loadbell_bench", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=64,  # Celery's default is 4; more keeps its processes fed
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_session = requests.Session()


@app.task(name="bench.notify")
def notify(url: str, body: dict[str, Any]) -> None:
    response = _session.post(url, json=body, timeout=10)
    response.raise_for_status()
