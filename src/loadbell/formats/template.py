"""Custom webhook bodies: a Jinja2 template per channel, rendered in a sandbox.

The template sees the variables of :func:`variables` (docs/templates.md lists them with
examples). It runs in Jinja2's ``SandboxedEnvironment`` with ``StrictUndefined`` (a typo
is an error, not an empty string) and autoescaping off (bodies are JSON or text, not
HTML). Use ``{{ value | tojson }}`` to put any value into a JSON body safely.

Errors name the template line: ``line 3: 'None' has no attribute 'id'``. On save,
:func:`check` renders the sample of every event the channel will receive and names the
event too: ``event project.created, line 3: ...``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC
from types import TracebackType
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from loadbell.domain.events import EventType
from loadbell.domain.metrics import readable
from loadbell.formats import k6cloud, samples
from loadbell.formats.summary import summarize
from loadbell.values import ConfigError, Message

FIELD = "config.template"
MAX_TEMPLATE_CHARS = 65_536
MAX_BODY_BYTES = 1_048_576  # what one rendered body may weigh
_MAX_EXPONENT = 1_000  # `**` beyond this would burn the worker's CPU


class TemplateError(ConfigError):
    """A template that does not compile or render. ``message`` starts with ``line N:``
    (the template's line), or with ``event E, line N:`` when a save-time check rendered
    the sample of event ``E``."""

    def __init__(self, line: int | None, message: str, *, event: EventType | None = None) -> None:
        where = ", ".join(
            ([f"event {event.value}"] if event else []) + ([f"line {line}"] if line else [])
        )
        super().__init__(FIELD, f"{where}: {message}" if where else message)
        self.line = line
        self.event = event
        self.reason = message  # without the "event E, line N: " prefix


def _tojson(value: Any, indent: int | None = None) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent, default=str, allow_nan=False)
    except ValueError:  # NaN or an infinity, which JSON cannot say: null, as orjson writes them
        return json.dumps(_finite(value), ensure_ascii=False, indent=indent, default=str)


def _finite(value: Any, within: frozenset[int] = frozenset()) -> Any:
    """``value`` with NaN and the infinities as None. A container that holds itself (a
    template can build one) is left as it is, for json.dumps to refuse as usual."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if id(value) in within:
        return value
    if isinstance(value, Mapping):
        inner = within | {id(value)}
        return {k: _finite(v, inner) for k, v in value.items()}
    if isinstance(value, list | tuple):
        inner = within | {id(value)}
        return [_finite(v, inner) for v in value]
    return value


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


class EventName(str):
    """loadbell's ``event`` (the event's name, ``{{ event }}``) that also answers Grafana
    Cloud k6's ``event.id``, ``event.type`` and ``event.text``, so templates written for
    either render."""

    id: str
    type: str
    text: str

    @classmethod
    def of(cls, name: str, grafana: Mapping[str, str]) -> EventName:
        out = cls(name)
        out.id, out.type, out.text = grafana["id"], grafana["type"], grafana["text"]
        return out


def variables(message: Message) -> dict[str, Any]:
    """What a template can use. Keep docs/templates.md in step with this.

    Besides loadbell's own names, Grafana Cloud k6's context (``test``, ``user``,
    ``event.id/type/text``, ``errors``: ``formats/k6cloud.py``)."""
    ctx = message.context
    run = ctx.get("run")
    # Every metrics document a template sees is the readable one, so an odd figure is a
    # missing key that `default(...)` covers, as it covers a figure not reported yet.
    metrics = readable((run or {}).get("metrics"))
    if run:
        run = {**run, "metrics": metrics}
    extra = ctx.get("extra") or {}
    report = extra.get("report")
    if isinstance(report, Mapping) and "metrics" in report:
        extra = {**extra, "report": {**report, "metrics": readable(report["metrics"])}}
    occurred = message.occurred_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    summary = summarize(message)
    grafana = k6cloud.grafana_context(message)
    return {
        "event": EventName.of(message.event_type.value, grafana["event"]),
        "test": grafana["test"],
        "user": grafana["user"],
        "errors": grafana["errors"],
        "delivery_id": message.delivery_id,
        "occurred_at": occurred.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "organization": ctx.get("organization"),
        "project": ctx.get("project"),
        "load_test": ctx.get("load_test"),
        "run": run,
        "metrics": metrics,
        # The run against its baseline (domain/regression.py), or None: no baseline, not
        # finished, or an event without a run.
        "comparison": (run or {}).get("comparison"),
        "extra": extra,
        "channel": ctx.get("channel"),  # channel.disabled only
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


def check(source: str, content_type: str, events: Iterable[EventType]) -> None:
    """Reject, on save, a template that cannot compile, that fails to render the sample
    (``formats/samples.py``) of one of ``events``, or that renders invalid JSON for a JSON
    content type. The first failure is raised, naming the event and the template's line;
    when other events render fine, the message says so: a template may be meant for some
    events only, and the channel's ``events`` can say which.
    """
    compile_template(source)
    events = list(events)
    failures = [(e, _failure(source, content_type, e)) for e in events]
    failed = [(e, f) for e, f in failures if f is not None]
    if not failed:
        return
    event, first = failed[0]
    assert first is not None
    fine = [e.value for e, f in failures if f is None]
    hint = (
        f"; it renders for {', '.join(fine)}: if it is meant for those only, set the "
        f"channel's events to them, otherwise guard what {event.value} lacks "
        "({% if run %}...{% endif %}, | default(...))"
        if fine
        else ""
    )
    raise TemplateError(first.line, first.reason + hint, event=event)


def _failure(source: str, content_type: str, event: EventType) -> TemplateError | None:
    message = samples.sample_message(event)
    try:
        text = render(source, message)
    except TemplateError as exc:
        return exc
    if not is_json(content_type):
        return None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        bad = lines[exc.lineno - 1] if exc.lineno <= len(lines) else ""
        return TemplateError(
            _source_line(source, message, exc.pos),
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"of the rendered body, which reads: {bad.strip()[:200]})",
        )
    return None


def _chunks(source: str, message: Message) -> list[tuple[str, int | None, bool]]:
    """Render again, keeping each piece of output with the template line that wrote it
    and whether it is literal text. Jinja's compiled code maps its lines back to the
    template's (``debug_info``); literal text is a ``yield '...'`` line of that code."""
    template = compile_template(source)
    code = _ENV.compile(source, raw=True).splitlines()
    pieces: list[tuple[str, int | None, bool]] = []
    gen: Any = template.root_render_func(template.new_context(variables(message)))
    for chunk in gen:
        inner = gen
        while getattr(inner, "gi_yieldfrom", None) is not None:  # blocks: `yield from`
            inner = inner.gi_yieldfrom
        frame = getattr(inner, "gi_frame", None)
        if frame is None or frame.f_code.co_filename != "<template>":
            pieces.append((str(chunk), None, False))
            continue
        statement = code[frame.f_lineno - 1].strip() if frame.f_lineno <= len(code) else ""
        literal = statement.startswith(("yield '", 'yield "'))
        pieces.append((str(chunk), template.get_corresponding_lineno(frame.f_lineno), literal))
    return pieces


def _source_line(source: str, message: Message, pos: int) -> int | None:
    """The template line that wrote character ``pos`` of the rendered body, or None.

    A value (``{{ ... }}``) is on the line Jinja reports for it. Literal text is found in
    the source from that line on (Jinja reports the line of the tag before the text), and
    the newlines before ``pos`` within it are counted.
    """
    try:
        pieces = _chunks(source, message)
    except Exception:  # the first render succeeded, so this is not expected; stay vague
        return None
    offset = 0
    for i, (text, line, literal) in enumerate(pieces):
        if pos < offset + len(text) or i == len(pieces) - 1:  # past the end: the last one
            if line is None or not literal:
                return line
            line_start = sum(len(x) + 1 for x in source.split("\n")[: line - 1])
            found = source.find(text, line_start)
            if found < 0:  # text changed by whitespace control ({%- ... -%})
                return None
            return source.count("\n", 0, found + min(pos - offset, len(text))) + 1
        offset += len(text)
    return None


def content_type(config: Mapping[str, Any]) -> str:
    """The content type a template channel sends: its own header, else JSON."""
    for name, value in (config.get("headers") or {}).items():
        if name.lower() == "content-type":
            return str(value)
    return "application/json"
