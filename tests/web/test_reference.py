"""The template reference the webhook form links to is docs/templates.md as the wheel
carries it: the two copies never drift apart."""

from __future__ import annotations

from pathlib import Path

from loadbell.web.reference import HELP

DOCS = Path(__file__).parents[2] / "docs" / "templates.md"


def test_the_packaged_reference_is_docs_templates_md() -> None:
    """src/loadbell/web/help/templates.md equals docs/templates.md (copy it after an edit)."""
    assert (HELP / "templates.md").read_text(encoding="utf-8") == DOCS.read_text(
        encoding="utf-8"
    ), "copy docs/templates.md to src/loadbell/web/help/templates.md"
