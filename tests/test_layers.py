"""Imports run one way: a package imports only from the layers below it.

The layers, bottom up. A module may import from its own package and from any package of a
lower layer; never from its own layer's other packages, nor from a layer above. The store
imports neither ``delivery/`` nor ``channels/``, and ``formats/`` does not import
``channels/``: the shared value types they need live in the leaf module ``values``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import loadbell

LAYERS: list[set[str]] = [
    {"__init__", "domain"},
    {"values", "settings", "runtime", "security", "client", "testing"},
    {"formats"},
    {"channels", "store"},
    {"services"},
    {"delivery"},
    {"integrations"},
    {"api", "locust"},
    {"web"},
    {"app"},
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ROOT = Path(loadbell.__file__).parent


def _unit(path: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    parts = path.relative_to(ROOT).parts
    return parts[0].removesuffix(".py")


def _imported_units(tree: ast.AST) -> set[str]:
    units = set()
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "loadbell":
                units.add(parts[1] if len(parts) > 1 else "__init__")
    return units


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "migrations" not in p.parts)


def test_every_unit_has_a_layer() -> None:
    """A new package or top-level module is given its place in LAYERS."""
    assert {_unit(p) for p in _sources()} <= set(RANK)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_or_sideways_import(path: Path) -> None:
    """The module imports only its own package and lower layers."""
    unit = _unit(path)
    wrong = {
        other
        for other in _imported_units(ast.parse(path.read_text(), str(path)))
        if other != unit and RANK[other] >= RANK[unit]
    }
    assert not wrong, f"{path.relative_to(ROOT)} ({unit}) imports {sorted(wrong)} from above"


# web/ calls the channel services, never the API's handlers of them (issue 10).
WEB_MUST_NOT_IMPORT = {
    "loadbell.api.channels",
    "loadbell.api.channel_config",
    "loadbell.api.previews",
    "loadbell.api.slack",
    "loadbell.api.slack_checks",
}


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every module an import names, ``from a import b`` counted as both ``a`` and
    ``a.b`` (b may be a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


# Files another branch (svc-deliveries) moves to the services; strict, so that the mark is
# removed once they no longer import a handler.
_MOVED_ELSEWHERE = {"web/deliveries.py"}


def _web_sources() -> list[Any]:
    return [
        pytest.param(
            p,
            id=str(p.relative_to(ROOT)),
            marks=pytest.mark.xfail(strict=True, reason="moved to services on another branch")
            if str(p.relative_to(ROOT)) in _MOVED_ELSEWHERE
            else (),
        )
        for p in sorted((ROOT / "web").rglob("*.py"))
    ]


@pytest.mark.parametrize("path", _web_sources())
def test_web_calls_channel_services_not_api_handlers(path: Path) -> None:
    """A web page imports no channel, preview or Slack API handler module."""
    wrong = _imported_modules(ast.parse(path.read_text(), str(path))) & WEB_MUST_NOT_IMPORT
    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: call services/"


@pytest.mark.parametrize(
    "source",
    [
        "from loadbell.api import channels as channels_api",
        "from loadbell.api import channel_config as cc",
        "from loadbell.api.previews import render_preview",
        "import loadbell.api.slack",
    ],
)
def test_web_handler_imports_are_caught(source: str) -> None:
    """The check above sees each way of importing a handler module."""
    assert _imported_modules(ast.parse(source)) & WEB_MUST_NOT_IMPORT
