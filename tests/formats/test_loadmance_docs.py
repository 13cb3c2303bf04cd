"""The Loadmance bodies in docs/channels.md are the expected files the format tests use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXPECTED = Path(__file__).parent / "expected"
DOC = (ROOT / "docs" / "channels.md").read_text(encoding="utf-8")
SECTION = DOC[DOC.index("### Format `loadmance`") : DOC.index("### Format `template`")]
# <!-- expected: loadmance/FILE --> followed by the JSON block that must equal FILE.
MARKED = re.compile(r"<!-- expected: (loadmance/[\w.-]+\.json) -->\n```json\n(.*?)\n```", re.S)
BLOCKS = re.compile(r"```json\n(\{\n  \"type\": \"notification\".*?)\n```", re.S)
DOCUMENTED = MARKED.findall(SECTION)


def test_every_loadmance_body_names_its_file() -> None:
    """Each Loadmance envelope shown in the docs is marked with the file it must equal."""
    assert len(DOCUMENTED) == len(BLOCKS.findall(SECTION)) > 0


@pytest.mark.parametrize(("name", "body"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_documented_body_equals_its_expected_file(name: str, body: str) -> None:
    """The docs show the exact bytes the tests compare with, pretty-printed the same way."""
    assert body == (EXPECTED / name).read_text(encoding="utf-8").rstrip("\n")
