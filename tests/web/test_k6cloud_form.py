"""Saving a channel's Setup page keeps the Grafana Cloud k6 selection it has no boxes for."""

from __future__ import annotations

from loadbell.web.channel_form import Posted, keep_k6cloud_selection


def test_stored_selection_stays_for_events_still_ticked() -> None:
    """A stored k6cloud_events filter is posted again for an event still ticked, beside the
    form's own filters, and dropped with an event that was unticked."""
    stored = {
        "test.started": {"k6cloud_events": ["test.started.scheduled"]},
        "test.finished": {"k6cloud_events": ["test.finished.failed"]},
    }
    posted = Posted(events=["test.finished"], filters={"test.finished": {"results": ["failed"]}})
    keep_k6cloud_selection(posted, stored)
    assert posted.filters == {
        "test.finished": {"results": ["failed"], "k6cloud_events": ["test.finished.failed"]}
    }
