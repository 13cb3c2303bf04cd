"""Slack's Block Kit drawn as HTML for the preview: the mrkdwn it uses, and nothing a
load test's name carries can become markup."""

from __future__ import annotations

import orjson
import pytest

from loadbell.channels import slack
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.web.slack_preview import mrkdwn, of_body


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("*Status*\nFinished", "<strong>Status</strong><br>Finished"),  # a field: label, value
        ("_slow_ run", "<em>slow</em> run"),
        ("~gone~", "<del>gone</del>"),
        ("✅ `p(95)<500`", "✅ <code>p(95)&lt;500</code>"),  # code is not formatted inside
        ("`a*b*c`", "<code>a*b*c</code>"),
        ("snake_case_name", "snake_case_name"),  # '_' inside a word is no italic
        # mrkdwn's own escapes come back as characters, escaped again for HTML
        ("a &amp; b &lt;c&gt;", "a &amp; b &lt;c&gt;"),
        (
            "<https://loadbell.test/runs/1|run #1>",
            '<a href="https://loadbell.test/runs/1" rel="noopener noreferrer" '
            'target="_blank">run #1</a>',
        ),
        ("<javascript:alert(1)|click>", "click"),  # not a web or mail address: text only
        ("<!date^1751553300^{date_short_pretty}|2025-07-03T14:35:00Z>", "2025-07-03T14:35:00Z"),
        ("<!here> look", "@here look"),
        # what a load test's name carries stays text (slack.escape made it &lt;...)
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("\"quoted\" 'x'", "&#34;quoted&#34; &#39;x&#39;"),
    ],
)
def test_mrkdwn_as_html(text: str, html: str) -> None:
    """Each piece of mrkdwn loadbell writes becomes the HTML a reader expects."""
    assert str(mrkdwn(text)) == html


def test_a_sample_message_draws_every_block() -> None:
    """The finished sample draws its header, fields, key figures, thresholds, button and
    context line; the name of the load test is escaped."""
    message = samples.sample_message(EventType.TEST_FINISHED, public_url="http://lb.test")
    body = orjson.dumps(slack.payload(message)).decode()
    html = str(of_body(body))
    for part in ('class="slack-header"', 'class="slack-fields"', 'class="slack-button danger"'):
        assert part in html
    assert 'class="slack-context"' in html and "<code>" in html
    assert of_body('{"text": "no blocks"}') is None
    assert of_body("not json") is None
