"""Custom webhook bodies: a Jinja2 template per channel, rendered in a sandbox.

The template sees the variables of :func:`variables` (docs/templates.md lists them with
examples). It runs in Jinja2's ``SandboxedEnvironment`` with ``StrictUndefined`` (a typo
is an error, not an empty string) and autoescaping off (bodies are JSON or text, not
HTML). Use ``{{ value | tojson }}`` to put any value into a JSON body safely.

Errors name the template line: ``line 3: 'None' has no attribute 'id'``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC
from types import TracebackType
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from loadbell.channels.base import ConfigError, Message
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.formats.summary import summarize

FIELD = "config.template"
MAX_TEMPLATE_CHARS = 65_536
MAX_BODY_BYTES = 1_048_576  # what one rendered body may weigh
_MAX_EXPONENT = 1_000  # `**` beyond this would burn the worker's CPU


class TemplateError(ConfigError):
    """A template that does not compile or render; ``message`` starts with ``line N:``."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(FIELD, f"line {line}: {message}" if line else message)
        self.line = line


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


class _Sandbox(SandboxedEnvironment):
    """The sandbox also refuses ``"x" * 10**9`` and ``9 ** 10**9``, which would stall the
    worker long before any size check after rendering could help."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_EXPONENT:
            raise jinja2.exceptions.SecurityError(f"exponent {right} is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_BODY_BYTES
                ):
                    raise jinja2.exceptions.SecurityError("repetition would exceed 1 MiB")
        return super().call_binop(context, operator, left, right)


def _environment() -> SandboxedEnvironment:
    env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["tojson"] = _tojson
    return env


_ENV = _environment()


def _template_line(tb: TracebackType | None) -> int | None:
    """Jinja rewrites tracebacks so template frames carry the template's line numbers."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@functools.lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct source: rendering runs on every delivery attempt."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(None, f"the template is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.lineno, exc.message or "syntax error") from None


def variables(message: Message) -> dict[str, Any]:
    """What a template can use. Keep docs/templates.md in step with this."""
    ctx = message.context
    run = ctx.get("run")
    occurred = message.occurred_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    summary = summarize(message)
    return {
        "event": message.event_type.value,
        "delivery_id": message.delivery_id,
        "occurred_at": occurred.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "organization": ctx.get("organization"),
        "project": ctx.get("project"),
        "load_test": ctx.get("load_test"),
        "run": run,
        "metrics": (run or {}).get("metrics") or {},
        "extra": ctx.get("extra") or {},
        "public_url": message.public_url,
        "summary": {
            "severity": summary.severity.value,
            "title": summary.title,
            "text": summary.text,
            "facts": [{"name": name, "value": value} for name, value in summary.facts],
            "thresholds": [{"expression": e, "ok": ok} for e, ok in summary.thresholds],
            "link": summary.link,
        },
    }


def render(source: str, message: Message) -> str:
    template = compile_template(source)
    try:
        text = template.render(variables(message))
    except jinja2.TemplateError as exc:
        raise TemplateError(_template_line(exc.__traceback__), str(exc)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateError(
            _template_line(exc.__traceback__), f"{exc.__class__.__name__}: {exc}"
        ) from None
    if len(text.encode()) > MAX_BODY_BYTES:
        raise TemplateError(None, "the rendered body is larger than 1 MiB")
    return text


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def check(source: str, content_type: str) -> None:
    """Reject, on save, a template that cannot compile, that fails to render a sample
    ``test.finished`` event, or that renders invalid JSON for a JSON content type.

    Other events are not rendered here: a template may be written for run events only.
    The preview endpoint shows how each event renders.
    """
    text = render(source, samples.sample_message(EventType.TEST_FINISHED))
    if not is_json(content_type):
        return
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        bad = lines[exc.lineno - 1] if exc.lineno <= len(lines) else ""
        raise TemplateError(
            exc.lineno,
            f"the body rendered for a sample test.finished event is not valid JSON "
            f"({exc.msg}, column {exc.colno}); the rendered line is: {bad.strip()[:200]}",
        ) from None


def content_type(config: Mapping[str, Any]) -> str:
    """The content type a template channel sends: its own header, else JSON."""
    for name, value in (config.get("headers") or {}).items():
        if name.lower() == "content-type":
            return str(value)
    return "application/json"
