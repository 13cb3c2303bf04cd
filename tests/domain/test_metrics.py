"""How every format reads a run's metrics document, whatever shape a client stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from loadbell.domain.metrics import failed_thresholds, number, readable, thresholds
from loadbell.formats import samples

GOOD_THRESHOLD = {"metric": "http_req_duration", "expression": "p(95)<500", "ok": False}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1500, 1500),
        (50.2, 50.2),
        (-0.5, -0.5),
        (1.7e308, 1.7e308),  # finite, however large
        (10**300, 10**300),  # an int a float can hold
        (True, None),  # JSON's true is no count
        ("50.2", None),  # a number written as text is text
        (None, None),
        ([50], None),
        ({"value": 50}, None),
        (float("nan"), None),
        (float("inf"), None),
        (10**400, None),  # beyond a float: scaling or rounding it would raise
    ],
)
def test_number_is_a_finite_int_or_float(value: Any, expected: Any) -> None:
    """Only a finite int or float is a number; booleans and text are not."""
    assert number(value) == expected


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        # the document: the word and the string entry are left out
        ({"rps": "fast", "thresholds": ["x"]}, {"thresholds": []}),
        # every figure that is not a number goes; the numbers stay
        (
            {"requests": 10, "rps": "fast", "avg_ms": None, "p95_ms": True, "vus": [1]},
            {"requests": 10},
        ),
        ({"duration_s": float("nan"), "apdex": float("-inf")}, {}),
        ({"requests": 10**400}, {}),
        # thresholds that are no list are left out; so are entries that are no object
        ({"thresholds": "p(95)<500"}, {}),
        ({"thresholds": {"metric": "m", "ok": True}}, {}),
        ({"thresholds": None}, {}),
        ({"thresholds": [None, 1, "x", [], GOOD_THRESHOLD]}, {"thresholds": [GOOD_THRESHOLD]}),
        # an entry's text fields become "?" unless strings; ok is true only when true
        (
            {"thresholds": [{}, {"metric": 42, "expression": ["p"], "ok": "true"}]},
            {
                "thresholds": [
                    {"metric": "?", "expression": "?", "ok": False},
                    {"metric": "?", "expression": "?", "ok": False},
                ]
            },
        ),
        # an entry's other keys are kept as given
        (
            {"thresholds": [{**GOOD_THRESHOLD, "ok": True, "value": 480.0}]},
            {"thresholds": [{**GOOD_THRESHOLD, "ok": True, "value": 480.0}]},
        ),
        # checks: left out unless an object; its counts follow the figure rule
        ({"checks": [10, 0]}, {}),
        ({"checks": "all"}, {}),
        (
            {"checks": {"passes": "ten", "fails": 0, "rate": "x"}},
            {"checks": {"fails": 0, "rate": "x"}},
        ),
        # keys loadbell does not know are kept as given, for templates
        ({"p99_ms": "slow", "tags": {"a": [1]}}, {"p99_ms": "slow", "tags": {"a": [1]}}),
        # a document that is no object reads as empty
        (["rps", 50], {}),
        ("fast", {}),
        (None, {}),
    ],
)
def test_readable_leaves_out_what_is_not_the_documented_shape(
    document: Any, expected: dict[str, Any]
) -> None:
    """A figure that is not a number, and a threshold entry that is not an object, are left
    out as if never sent; everything else is kept."""
    assert readable(document) == expected


@pytest.mark.parametrize(
    "document",
    [samples.FINAL_METRICS, samples.RUNNING_METRICS, {}],
    ids=["final", "running", "empty"],
)
def test_a_document_of_the_documented_shape_reads_unchanged(document: dict[str, Any]) -> None:
    """Well-formed figures and thresholds come back equal, so they render as before."""
    before = copy.deepcopy(document)
    assert readable(document) == document
    assert document == before  # and the stored document is not touched


def test_readable_is_idempotent() -> None:
    """Reading a read document changes nothing: formats may call it on either."""
    once = readable({"rps": "fast", "requests": 3, "thresholds": [{"ok": 1}, "x"]})
    assert readable(once) == once


def test_failed_thresholds_count_only_what_is_not_said_to_pass() -> None:
    """A threshold fails unless its ok is true; entries that are no object are skipped."""
    document = {
        "thresholds": [
            {"metric": "a", "expression": "x", "ok": True},
            {"metric": "b", "expression": "x", "ok": False},
            {"metric": "c", "expression": "x"},  # ok missing: not said to pass
            {"metric": "d", "expression": "x", "ok": "true"},  # text, not true
            "e",
        ]
    }
    assert [t["metric"] for t in failed_thresholds(document)] == ["b", "c", "d"]
    assert len(thresholds(document)) == 4
