"""Text people type that loadbell stores and shows: names and one-line values.

A control character (Unicode category Cc: NUL, tab, newline, escape, ...) is refused: it
breaks a page's layout or an HTTP header, and PostgreSQL refuses NUL in text outright.
"""

from __future__ import annotations

import unicodedata


def control_character(value: str) -> str | None:
    """The first control character in ``value``, as ``U+0000``, or None."""
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            return f"U+{ord(ch):04X}"
    return None


def one_line(value: str) -> str:
    """``value`` unchanged, or ValueError when it holds a control character."""
    found = control_character(value)
    if found is not None:
        raise ValueError(f"contains the control character {found}; give one line of text")
    return value


def plain_name(value: str) -> str:
    """A name trimmed of surrounding spaces; ValueError when nothing else is left or a
    control character is in it."""
    name = value.strip()
    if not name:
        raise ValueError("is only spaces; give a name with letters or digits in it")
    return one_line(name)
