"""Imports run one way: a package imports only from the layers below it.

The layers, bottom up. A module may import from its own package and from any package of a
lower layer; never from its own layer's other packages, nor from a layer above. The store
imports neither ``delivery/`` nor ``channels/``, and ``formats/`` does not import
``channels/``: the shared value types they need live in the leaf module ``values``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import loadbell

LAYERS: list[set[str]] = [
    {"__init__", "domain"},
    {"values", "clock", "settings", "runtime", "security", "client", "testing", "monitoring"},
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


# API routers whose operations live in services/: the web pages call the services, never
# these handlers as functions (the two edges do not import each other's operations).
# Add a router here once its operations have moved.
SERVICE_BACKED_ROUTERS = {
    "channel_config",
    "channels",
    "deliveries",
    "events",
    "health",
    "load_tests",
    "organizations",
    "previews",
    "projects",
    "reports",
    "runs",
    "slack",
    "slack_checks",
}


def _api_modules(tree: ast.AST) -> set[str]:
    """The ``loadbell.api`` submodules a module imports, in any spelling."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "loadbell.api":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("loadbell.api."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["loadbell", "api"] and len(parts) > 2:
                    found.add(parts[2])
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from loadbell.api import deliveries as deliveries_api",
        "from loadbell.api.events import list_events",
        "import loadbell.api.deliveries",
        "from loadbell.api import channels as channels_api",
        "from loadbell.api.previews import render_preview",
        "import loadbell.api.slack",
    ],
)
def test_router_imports_are_recognised(source: str) -> None:
    """Each way of spelling an import of an API router is caught."""
    assert _api_modules(ast.parse(source)) & SERVICE_BACKED_ROUTERS


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "web").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_pages_call_services_not_api_handlers(path: Path) -> None:
    """A web module imports no API router whose operations live in services/."""
    wrong = _api_modules(ast.parse(path.read_text(), str(path))) & SERVICE_BACKED_ROUTERS
    assert not wrong, f"{path.relative_to(ROOT)} imports api.{sorted(wrong)}: call services/"
