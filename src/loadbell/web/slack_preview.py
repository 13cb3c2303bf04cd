"""A Slack message's preview as people will see it: Block Kit blocks drawn as HTML.

It draws what ``channels/slack.py`` builds (header, sections with text and fields,
actions with a link button, context) and Slack's mrkdwn inside them: ``*bold*``,
``_italic_``, ``~strike~``, `` `code` ``, ``<url|label>`` links, and ``<!date^…|fallback>``
shown as its fallback text. It is a preview, not Slack's renderer: a block it does not know
is left out (the Block Kit JSON stays on the page, under "Block Kit JSON").

Safety: mrkdwn escapes ``&``, ``<`` and ``>`` as entities, so every raw ``<…>`` is a control
sequence. Text is unescaped, then escaped for HTML with markupsafe, and only then are the
tags of the formatting added; a link keeps only an http(s) or mailto address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from markupsafe import Markup, escape

_CONTROL = re.compile(r"<([^<>]*)>")
_CODE = re.compile(r"`([^`\n]+)`")
_STYLES = (
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])"), "strong"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])"), "em"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])"), "del"),
)
_LINK_SCHEMES = ("http://", "https://", "mailto:")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _styled(text: str) -> str:
    """Plain mrkdwn text (no control sequences) as HTML: escaped, then formatted."""
    out: list[str] = []
    last = 0
    for match in _CODE.finditer(text):
        out.append(_emphasis(text[last : match.start()]))
        out.append(f"<code>{escape(_unescape(match.group(1)))}</code>")
        last = match.end()
    out.append(_emphasis(text[last:]))
    return "".join(out)


def _emphasis(text: str) -> str:
    html = str(escape(_unescape(text)))  # * _ ~ are not escaped, so the patterns still see them
    for pattern, tag in _STYLES:
        html = pattern.sub(rf"<{tag}>\1</{tag}>", html)
    return html.replace("\n", "<br>")


def _control(inner: str) -> str:
    """One ``<…>`` sequence: a link, a date, a mention."""
    target, _, label = inner.partition("|")
    if target.startswith("!date^"):
        return str(escape(_unescape(label or target)))
    if target.startswith("!"):  # <!here>, <!channel>
        return str(escape("@" + target[1:].split("^", 1)[0]))
    if target.startswith(("@", "#")):  # <@U123>, <#C123|name>
        return str(escape(target[0] + _unescape(label or target[1:])))
    url = _unescape(target)
    text = _unescape(label) if label else url
    if not url.startswith(_LINK_SCHEMES):
        return str(escape(text))
    return f'<a href="{escape(url)}" rel="noopener noreferrer" target="_blank">{escape(text)}</a>'


def mrkdwn(text: str) -> Markup:
    """Slack mrkdwn as safe HTML."""
    out: list[str] = []
    last = 0
    for match in _CONTROL.finditer(text):
        out.append(_styled(text[last : match.start()]))
        out.append(_control(match.group(1)))
        last = match.end()
    out.append(_styled(text[last:]))
    return Markup("".join(out))  # every piece above is escaped


def _text(obj: Any) -> Markup:
    if not isinstance(obj, Mapping):
        return Markup("")
    raw = str(obj.get("text", ""))
    return mrkdwn(raw) if obj.get("type") == "mrkdwn" else escape(raw)


def _block(block: Mapping[str, Any]) -> Markup:
    kind = block.get("type")
    if kind == "header":
        return Markup('<p class="slack-header">{}</p>').format(_text(block.get("text")))
    if kind == "section":
        parts = Markup("")
        if block.get("text"):
            parts += Markup('<div class="slack-text">{}</div>').format(_text(block["text"]))
        fields = block.get("fields") or []
        if fields:
            cells = Markup("").join(
                Markup('<div class="slack-field">{}</div>').format(_text(f)) for f in fields
            )
            parts += Markup('<div class="slack-fields">{}</div>').format(cells)
        return Markup('<div class="slack-section">{}</div>').format(parts)
    if kind == "actions":
        buttons = Markup("")
        for element in block.get("elements") or []:
            url = str(element.get("url") or "")
            if element.get("type") != "button" or not url.startswith(_LINK_SCHEMES):
                continue
            style = element.get("style")
            css = f"slack-button {style}" if style in ("primary", "danger") else "slack-button"
            buttons += Markup(
                '<a class="{}" href="{}" rel="noopener noreferrer" target="_blank">{}</a>'
            ).format(css, url, _text(element.get("text")))
        return Markup('<p class="slack-actions">{}</p>').format(buttons)
    if kind == "context":
        items = Markup(" ").join(_text(e) for e in block.get("elements") or [])
        return Markup('<p class="slack-context">{}</p>').format(items)
    if kind == "divider":
        return Markup("<hr>")
    return Markup("")


def render(blocks: list[Any]) -> Markup:
    """The blocks of one message as HTML."""
    return Markup("").join(_block(b) for b in blocks if isinstance(b, Mapping))


def of_body(body: str) -> Markup | None:
    """The rendered message of a Slack request body (incoming webhook or
    ``chat.postMessage``), or None when the body carries no blocks."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    blocks = data.get("blocks") if isinstance(data, dict) else None
    if not isinstance(blocks, list):
        return None
    return render(blocks)
