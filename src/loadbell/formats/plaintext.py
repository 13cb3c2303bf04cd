"""The plain-text rendering of an event summary, shared by email and Apprise."""

from __future__ import annotations

from loadbell.formats.summary import Summary


def render(summary: Summary) -> str:
    """``summary.text``, then one ``Label: value`` line per fact, the thresholds and the
    link, separated by blank lines. No trailing newline."""
    blocks = [summary.text]
    if summary.facts:
        blocks.append("\n".join(f"{name}: {value}" for name, value in summary.facts))
    if summary.thresholds:
        blocks.append(
            "Thresholds:\n"
            + "\n".join(f"  {'passed' if ok else 'FAILED'}  {e}" for e, ok in summary.thresholds)
        )
    if summary.link:
        blocks.append(f"View the run: {summary.link}")
    return "\n\n".join(blocks)
