"""Value-level inheritance of an organization channel into a project (seed 003, XTC)."""

from __future__ import annotations

from typing import Any

import pytest

from loadbell.domain.inheritance import Source, drop_empty, is_empty, merge

ORG = {"url": "https://org.example/hook", "targets": "#load #ops", "format": "loadimpact"}
DEFAULTS = {"format": "loadimpact", "headers": {}}


def _merge(
    project_enabled: bool | None,
    project_config: dict[str, Any],
    *,
    org_enabled: bool = True,
    org_config: dict[str, Any] | None = None,
) -> Any:
    return merge(
        org_enabled=org_enabled,
        org_config=ORG if org_config is None else org_config,
        project_enabled=project_enabled,
        project_config=project_config,
        defaults=DEFAULTS,
    )


@pytest.mark.parametrize(
    ("org_enabled", "project_enabled", "enabled", "source"),
    [
        (True, None, True, Source.ORGANIZATION),  # unset: inherit
        (False, None, False, Source.ORGANIZATION),
        (True, False, False, Source.PROJECT),  # the project switches it off
        (False, True, True, Source.PROJECT),  # ... or on, even when the org is off
        (True, True, True, Source.PROJECT),
    ],
)
def test_project_switch_always_wins_when_set(
    org_enabled: bool, project_enabled: bool | None, enabled: bool, source: Source
) -> None:
    """The project's "send messages" switch wins whenever the project sets it."""
    eff = _merge(project_enabled, {}, org_enabled=org_enabled)
    assert eff.enabled is enabled
    assert eff.sources["enabled"] is source


def test_non_empty_project_values_override() -> None:
    """Connection data and target lists from the project replace the organization's."""
    eff = _merge(None, {"url": "https://project.example/hook", "targets": "#team"})
    assert eff.config["url"] == "https://project.example/hook"
    assert eff.config["targets"] == "#team"
    assert eff.sources["url"] is Source.PROJECT
    assert eff.sources["targets"] is Source.PROJECT
    assert eff.sources["format"] is Source.ORGANIZATION


@pytest.mark.parametrize(
    "empty",
    [
        "",  # cleared text field
        "   ",  # whitespace only
        None,  # null
        [],  # an empty target list
        {},  # empty headers
    ],
)
def test_empty_never_overrides(empty: Any) -> None:
    """An empty project value falls back to the organization's value."""
    eff = _merge(None, {"url": empty, "targets": empty})
    assert eff.config["url"] == ORG["url"]
    assert eff.config["targets"] == ORG["targets"]
    assert eff.sources["url"] is Source.ORGANIZATION


def test_clearing_falls_back() -> None:
    """Clearing a value the project had set brings the organization's value back."""
    before = _merge(None, drop_empty({"url": "https://project.example/hook"}))
    assert before.config["url"] == "https://project.example/hook"
    after = _merge(None, drop_empty({"url": ""}))
    assert after.config["url"] == ORG["url"]
    assert after.sources["url"] is Source.ORGANIZATION


def test_defaults_fill_what_nobody_set() -> None:
    """A key neither level sets comes from the kind's defaults, marked as such."""
    eff = _merge(None, {}, org_config={"url": "https://org.example/hook"})
    assert eff.config["format"] == "loadimpact"
    assert eff.config["headers"] == {}
    assert eff.sources["format"] is Source.DEFAULT
    assert eff.sources["headers"] is Source.DEFAULT
    assert eff.sources["url"] is Source.ORGANIZATION


def test_project_values_beat_defaults() -> None:
    """A project value wins over a default when the organization left the key unset."""
    eff = _merge(None, {"format": "loadimpact-legacy"}, org_config={"url": "https://o.example"})
    assert eff.config["format"] == "loadimpact-legacy"
    assert eff.sources["format"] is Source.PROJECT


@pytest.mark.parametrize(
    ("value", "empty"),
    [
        (None, True),
        ("", True),
        (" \t", True),
        ([], True),
        ({}, True),
        ((), True),
        ("x", False),
        (0, False),  # zero is a value, not emptiness
        (False, False),  # so is false
        (["#a"], False),
    ],
)
def test_is_empty(value: Any, empty: bool) -> None:
    """Only missing, blank and empty-collection values count as empty."""
    assert is_empty(value) is empty


def test_drop_empty_stores_no_emptiness() -> None:
    """drop_empty removes empty values and keeps real ones (zero and false included)."""
    assert drop_empty({"url": "", "targets": [], "x": 0, "y": False, "z": "a"}) == {
        "x": 0,
        "y": False,
        "z": "a",
    }
