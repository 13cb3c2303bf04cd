"""JSON bodies loadbell cannot store are refused at the edge with a 422 naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.support import assert_error, new_run
from loadbell.api.json_body import MAX_DEPTH


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        # an integer past 64 bits, where a figure goes
        ('{"metrics": {"requests": 18446744073709551616}}', "metrics.requests", "64 bits"),
        ('{"metrics": {"x": -9223372036854775809}}', "metrics.x", "64 bits"),
        # past a signed 64-bit integer, within an unsigned one (orjson reads it as an int)
        ('{"metrics": {"requests": 9223372036854775808}}', "metrics.requests", "64 bits"),
        # not JSON numbers, though Python's parser takes them
        ('{"metrics": {"rps": NaN}}', "metrics.rps", "NaN"),
        ('{"metrics": {"rps": -Infinity}}', "metrics.rps", "Infinity"),
        # nesting past the limit, and far past it (the parser's own stack)
        (f'{{"metrics": {{"deep": {_nested(MAX_DEPTH)}}}}}', "metrics.deep", "nested"),
        (f'{{"metrics": {{"deep": {_nested(100_000)}}}}}', "body", "nested"),
    ],
)
async def test_unstorable_json_is_refused(
    api: httpx.AsyncClient, raw: str, field: str, hint: str
) -> None:
    """Each body answers 422 naming the value's field, and the run does not change."""
    run = await new_run(api)
    r = await api.patch(
        f"/runs/{run['id']}", content=raw, headers={"Content-Type": "application/json"}
    )
    body = assert_error(r, 422, field)
    assert hint in body["message"]
    assert (await api.get(f"/runs/{run['id']}")).json()["metrics"] == {}


async def test_storable_edges_pass(api: httpx.AsyncClient) -> None:
    """The largest 64-bit integers and nesting up to the limit are kept."""
    run = await new_run(api)
    deep: Any = []
    for _ in range(MAX_DEPTH - 3):  # the body, "metrics" and "deep" take three levels
        deep = [deep]
    metrics = {"big": 2**63 - 1, "small": -(2**63), "deep": deep}
    r = await api.patch(f"/runs/{run['id']}", json={"metrics": metrics})
    assert r.status_code == 200, r.text
    assert r.json()["metrics"]["big"] == 2**63 - 1
