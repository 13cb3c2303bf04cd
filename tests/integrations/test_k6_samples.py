"""The reader of k6's ``--out json`` stream behind exact Apdex, fed through a real FIFO."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from loadbell.integrations.apdex import Apdex
from loadbell.integrations.k6_live import SampleStream


def point(value: float, tags: dict[str, str], metric: str = "http_req_duration") -> bytes:
    """One sample line as k6 v1.1.0 writes it (tags sorted by name)."""
    line = {
        "metric": metric,
        "type": "Point",
        "data": {"time": "2026-12-02T08:27:39.503993694Z", "value": value, "tags": tags},
    }
    return json.dumps(line, separators=(",", ":"), sort_keys=False).encode() + b"\n"


def tags(expected: str | None = "true", status: str = "200", **extra: str) -> dict[str, str]:
    out = {"group": "", "method": "GET", "name": "http://t/", "status": status, **extra}
    if expected is not None:
        out["expected_response"] = expected
    out["url"] = extra.get("url", "http://t/")
    return dict(sorted(out.items()))


METRIC = (
    b'{"type":"Metric","data":{"name":"http_req_failed","type":"rate","contains":"default",'
    b'"thresholds":["rate<0.01"],"submetrics":null},"metric":"http_req_failed"}\n'
)


def feed(directory: Path, pieces: list[bytes], pause: float = 0.0) -> SampleStream:
    """Write ``pieces`` into the FIFO as k6 would, then drain and close the reader."""
    directory.mkdir(exist_ok=True)
    stream = SampleStream(str(directory / "samples"), Apdex(100))
    stream.open()
    fd = os.open(stream.path, os.O_WRONLY)
    for piece in pieces:
        os.write(fd, piece)
        if pause:
            time.sleep(pause)
    os.close(fd)
    stream.close()
    return stream


@pytest.mark.parametrize(
    ("line", "counted"),
    [
        # T = 100 ms: satisfied, tolerating, frustrated by time, by failure
        (point(12.5, tags()), "satisfied"),
        (point(100.0, tags()), "satisfied"),  # exactly T
        (point(250.0, tags()), "tolerating"),
        (point(400.1, tags()), "frustrated"),
        (point(1.0, tags("false", "500")), "frustrated"),  # a fast failure
        (point(1e-3, tags()), "satisfied"),  # k6 may write tiny values in e-notation
        # a user tag that sorts before expected_response
        (point(250.0, tags(env="prod", a="1")), "tolerating"),
        (point(1.0, tags("false", env="prod")), "frustrated"),
        # a quote inside a tag: not matched in place, parsed by orjson
        (point(1.0, tags("false", url='http://t/?q="x"')), "frustrated"),
        # --system-tags without expected_response: the status decides
        (point(1.0, tags(None, "503")), "frustrated"),
        (point(1.0, tags(None, "204")), "satisfied"),
        (point(1.0, tags(None, "0")), "frustrated"),  # no response at all
        # other metrics do not count
        (point(1.0, tags(), metric="http_req_waiting"), None),
        (point(1.0, tags(), metric="http_req_duration_x"), None),
    ],
)
def test_each_duration_point_counts_once(tmp_path: Path, line: bytes, counted: str | None) -> None:
    """Each http_req_duration point counts in its Apdex bucket; other metrics do not."""
    stream = feed(tmp_path, [line])
    expected = {"satisfied": 0, "tolerating": 0, "frustrated": 0}
    if counted is not None:
        expected[counted] = 1
    assert stream.apdex.counts() == expected


def test_lines_split_across_reads(tmp_path: Path) -> None:
    """Lines cut anywhere by the pipe are put back together: every point counts once, in
    reads of a few bytes as in one large read."""
    # T = 100 ms; every 10th request failed, the others take 0-299 ms
    lines = [point(float(i % 300), tags("false" if i % 10 == 0 else "true")) for i in range(3000)]
    data = METRIC + b"".join(lines)
    expected = {
        "satisfied": sum(1 for i in range(3000) if i % 10 and i % 300 <= 100),
        "tolerating": sum(1 for i in range(3000) if i % 10 and i % 300 > 100),
        "frustrated": 300,
    }
    small = [data[i : i + 37] for i in range(0, len(data), 37)]
    by_bits = feed(tmp_path / "small", small[:50], pause=0.001)
    by_bits_rest = feed(tmp_path / "rest", [b"".join(small[:50]), *small[50:]])
    at_once = feed(tmp_path / "once", [data])
    assert sum(by_bits.apdex.counts().values()) == data[: 50 * 37].count(b"\n") - 1
    for stream in (by_bits_rest, at_once):
        assert stream.apdex.counts() == expected
        assert stream.thresholds == {"http_req_failed": ["rate<0.01"]}


def test_a_stream_larger_than_the_buffer(tmp_path: Path) -> None:
    """Many MiB go through the one buffer: counts stay exact."""
    line = point(50.0, tags())
    n = (5 << 20) // len(line)
    writer_done = threading.Event()
    stream = SampleStream(str(tmp_path / "samples"), Apdex(100))
    stream.open()

    def write() -> None:
        fd = os.open(stream.path, os.O_WRONLY)
        os.write(fd, line * n)
        os.close(fd)
        writer_done.set()

    threading.Thread(target=write).start()
    assert writer_done.wait(30)
    stream.close()
    assert stream.apdex.counts() == {"satisfied": n, "tolerating": 0, "frustrated": 0}


def test_reader_thread_yields_the_cpu(tmp_path: Path) -> None:
    """The reader runs 10 nice levels below the wrapper, so k6 wins a saturated CPU."""
    stream = SampleStream(str(tmp_path / "samples"), Apdex(100))
    stream.open()
    try:
        assert stream._thread is not None and stream._thread.native_id is not None
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        deadline = time.monotonic() + 5
        while (
            theirs := os.getpriority(os.PRIO_PROCESS, stream._thread.native_id)
        ) == mine and time.monotonic() < deadline:
            time.sleep(0.01)
        assert theirs == min(19, mine + 10)
    finally:
        stream.close()
