"""The "Setup" form of each channel kind: which fields it shows, and how a posted form
becomes the body of the channels API (``ChannelIn`` / ``ChannelPatch`` / ``OverrideIn``).

Nothing here decides what a valid config is: the kind's ``validate`` does, through the
API handlers the pages call. This module only maps form fields to config keys and keeps
what the person typed, so a refused form comes back as they left it.

Secrets are never put back into a form. A secret field left blank keeps the stored value
(the API's masked value is sent back, which it reads as "unchanged").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from loadbell.channels.registry import get_kind
from loadbell.domain.events import SUBSCRIBABLE, EventType
from loadbell.domain.statuses import TERMINAL_STATUSES, RunResult, RunStatus, Trigger
from loadbell.security.masking import MASK
from loadbell.services.channel_config import validated_events


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    input: str  # text | secret | select | number | checkbox | list | textarea
    help: str = ""
    options: tuple[tuple[str, str], ...] = ()
    placeholder: str = ""
    required: bool = False
    override: bool = True  # may a project override it (seed 003)
    formats: tuple[str, ...] = ()  # webhook: shown only for these formats (all when empty)


@dataclass(frozen=True)
class KindForm:
    kind: str
    title: str
    blurb: str
    fields: tuple[Field, ...]
    headers: bool = False  # custom header rows (webhook)
    signing: bool = False  # Standard Webhooks signing with rotation (webhook)
    template: bool = False  # Jinja2 body with live preview (webhook, format "template")
    slack_install: bool = False  # Slack app OAuth install (seed 003)

    @property
    def secret_keys(self) -> frozenset[str]:
        return get_kind(self.kind).secret_keys


_URL = "Paste the incoming-webhook URL the service gave you."
# Each format by what it is for, in the words of the service whose receivers expect it.
FORMATS = (
    ("loadimpact", "LoadImpact / k6 Cloud v4"),
    ("loadimpact-legacy", "LoadImpact, older status codes (receivers built before k6 Cloud)"),
    ("loadmance", "Loadmance envelope (one JSON shape for every event)"),
    ("k6cloud", "Grafana Cloud k6 (its current webhook body)"),
    ("template", "My own Jinja2 template"),
)
# Where the template reference is served (web/help.py), from the wheel's copy of
# docs/templates.md: a served page works on every install, offline too.
TEMPLATE_HELP = "/help/templates"

FORMS: dict[str, KindForm] = {
    "webhook": KindForm(
        "webhook",
        "WebHook",
        "An HTTP POST with a JSON body to any URL, in the LoadImpact, Loadmance, Grafana Cloud "
        "k6 or your own format.",
        (
            Field(
                "url",
                "Webhook URL",
                "secret",
                "Where loadbell POSTs the notifications.",
                required=True,
                placeholder="https://example.com/hooks/load-tests",
            ),
            Field("format", "Format", "select", "The body and headers of each request.", FORMATS),
            Field(
                "source",
                "Source",
                "text",
                "The envelope's source field: the name receivers see as the sender.",
                placeholder="loadbell",
                formats=("loadmance",),
            ),
        ),
        headers=True,
        signing=True,
        template=True,
    ),
    "slack": KindForm(
        "slack",
        "Slack",
        "A Slack incoming webhook: in Slack add the Incoming WebHook app, pick a channel and "
        "copy the WebHook URL.",
        (
            Field(
                "webhook_url",
                "Webhook URL",
                "secret",
                _URL,
                required=True,
                placeholder="https://hooks.slack.com/services/T000/B000/XXXX",
            ),
        ),
    ),
    "slack_app": KindForm(
        "slack_app",
        "Slack app",
        "Install loadbell's Slack app in a workspace, then name public channels to post to.",
        (
            Field(
                "targets",
                "Target channels",
                "text",
                "Public channels, separated by spaces (#load-tests C0123ABCD). Private "
                "channels and people are not supported.",
                placeholder="#load-tests",
            ),
        ),
        slack_install=True,
    ),
    "hipchat": KindForm(
        "hipchat",
        "HipChat",
        "A room notification URL of a self-hosted HipChat-compatible server (HipChat Cloud "
        "shut down in 2019).",
        (
            Field("url", "URL", "secret", "The room's notification URL.", required=True),
            Field("token", "Room token", "secret", "Only if the URL carries no auth_token."),
            Field("notify", "Alert the room's members", "checkbox"),
        ),
    ),
    "teams": KindForm(
        "teams",
        "Microsoft Teams",
        "A Teams Workflows (Power Automate) webhook; messages are Adaptive Cards.",
        (Field("url", "URL", "secret", _URL, required=True),),
    ),
    "discord": KindForm(
        "discord",
        "Discord",
        "A Discord channel webhook (Server settings, Integrations, Webhooks).",
        (Field("url", "URL", "secret", _URL, required=True),),
    ),
    "mattermost": KindForm(
        "mattermost",
        "Mattermost / Rocket.Chat",
        "An incoming webhook of Mattermost or Rocket.Chat.",
        (Field("url", "URL", "secret", _URL, required=True),),
    ),
    "email": KindForm(
        "email",
        "Email",
        "HTML and text mail through your SMTP server.",
        (
            Field(
                "to",
                "To",
                "list",
                "Addresses separated by commas or spaces.",
                placeholder="ops@example.com, qa@example.com",
            ),
            Field("from", "From", "text", placeholder="loadbell@example.com"),
            Field("smtp_host", "SMTP host", "text", placeholder="smtp.example.com"),
            Field("smtp_port", "SMTP port", "number", "587 (STARTTLS), 465 (TLS) or 25."),
            Field("smtp_username", "SMTP user name", "text"),
            Field("smtp_password", "SMTP password", "secret"),
            Field("starttls", "Use STARTTLS", "checkbox"),
            Field("tls", "Use TLS from the start (port 465)", "checkbox"),
        ),
    ),
    "apprise": KindForm(
        "apprise",
        "Apprise",
        "Any of the 100+ services Apprise reaches, by its URL (tgram://..., mailto://...).",
        (
            Field(
                "url", "Apprise URL", "secret", required=True, placeholder="tgram://bottoken/ChatID"
            ),
        ),
    ),
}


def form_for(kind: str) -> KindForm:
    """The kind's form; a kind without one gets a single JSON field for its config."""
    found = FORMS.get(kind)
    if found is not None:
        return found
    return KindForm(
        kind,
        kind,
        "Settings as JSON, as the channels API takes them.",
        (Field("config_json", "Config (JSON)", "textarea", override=False),),
    )


# -- events and the seed 000 filters -----------------------------------------------------

EVENT_LABELS: dict[EventType, str] = {
    EventType.TEST_STARTING: "Test starting (initializing)",
    EventType.TEST_STARTED: "Test started (running)",
    EventType.TEST_FINISHED: "Test finished (finished, aborted or failed)",
    EventType.TEST_REPORT_INTERMEDIATE: "Intermediate report",
    EventType.TEST_REPORT_AVAILABLE: "Final report available",
    EventType.TEST_THRESHOLD_FAILED: "Threshold failed during the run",
    EventType.TEST_REGRESSED: "Test regressed against its baseline",
    EventType.LOAD_TEST_CREATED: "Load test created",
    EventType.LOAD_TEST_UPDATED: "Load test updated",
    EventType.LOAD_TEST_DELETED: "Load test deleted",
    EventType.PROJECT_CREATED: "Project created",
    EventType.PROJECT_UPDATED: "Project updated",
    EventType.PROJECT_DELETED: "Project deleted",
    EventType.CHANNEL_DISABLED: "A channel disabled for failing",
}
START_EVENTS = (EventType.TEST_STARTING.value, EventType.TEST_STARTED.value)
FINISHED = EventType.TEST_FINISHED.value
TRIGGERS = tuple(t.value for t in Trigger)
FINISH_STATUSES = tuple(sorted(int(s) for s in TERMINAL_STATUSES))
RESULTS = tuple(r.value for r in RunResult)


def event_choices(kind: str) -> list[dict[str, Any]]:
    """Every subscribable event, with the formats (webhook) that can express it, so the
    page can grey out the others when the format changes."""
    k = get_kind(kind)
    formats = [v for v, _ in FORMATS] if kind == "webhook" else [""]
    out = []
    for event in SUBSCRIBABLE:
        able = [f for f in formats if event in k.events({"format": f} if f else {})]
        out.append(
            {"value": event.value, "label": EVENT_LABELS.get(event, event.value), "formats": able}
        )
    return out


def status_choices() -> list[tuple[int, str]]:
    return [(code, RunStatus(code).text) for code in FINISH_STATUSES]


def filter_values(events: list[str], filters: Mapping[str, Any]) -> dict[str, Any]:
    """The filter checkboxes of a stored channel (an omitted list means "all ticked")."""
    start: list[str] = list(TRIGGERS)
    for name in START_EVENTS:
        triggers = (filters.get(name) or {}).get("triggers")
        if triggers is not None:
            start = list(triggers)
            break
    finished = filters.get(FINISHED) or {}
    return {
        "events": list(events),
        "start_triggers": start,
        "finish_statuses": [str(s) for s in finished.get("statuses", FINISH_STATUSES)],
        "finish_results": list(finished.get("results", RESULTS)),
    }


# -- parsing a posted form -------------------------------------------------------------


@dataclass
class Posted:
    """A posted Setup form: what to send to the API, what to show again, what is wrong."""

    name: str = ""
    enabled: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    filters: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


def _list(form: FormData, key: str) -> list[str]:
    return [v for v in form.getlist(key) if isinstance(v, str)]


def split_list(raw: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", raw) if part]


def parse_fields(
    kind: KindForm, form: FormData, stored: Mapping[str, Any] | None, posted: Posted
) -> None:
    """Fill ``posted.config`` from the kind's fields. ``stored`` is the channel's masked
    config when editing (None when creating): blank secrets then keep their value."""
    import orjson

    for f in kind.fields:
        raw = _text(form, f.key)
        posted.values[f.key] = raw if f.input != "checkbox" else bool(form.get(f.key))
        if f.input == "secret":
            if form.get(f"clear_{f.key}") and stored is not None:
                posted.config[f.key] = None
            elif raw.strip():
                posted.config[f.key] = raw.strip()
            continue
        if f.input == "checkbox":
            posted.config[f.key] = bool(form.get(f.key))
            continue
        if f.input == "textarea" and f.key == "config_json":
            try:
                value = orjson.loads(raw or "{}")
            except orjson.JSONDecodeError as exc:
                posted.errors[f.key] = f"is not valid JSON ({exc})"
                continue
            if not isinstance(value, dict):
                posted.errors[f.key] = 'must be a JSON object such as {"url": "..."}'
                continue
            posted.config.update(value)
            continue
        raw = raw.strip()
        if not raw:
            if stored is not None:
                posted.config[f.key] = None  # cleared on purpose
            continue
        if f.input == "number":
            try:
                posted.config[f.key] = int(raw)
            except ValueError:
                posted.errors[f"config.{f.key}"] = f"'{raw}' is not a whole number"
        elif f.input == "list":
            posted.config[f.key] = split_list(raw)
        else:
            posted.config[f.key] = raw


def parse_headers(form: FormData, stored: Mapping[str, Any] | None, posted: Posted) -> None:
    names, values = _list(form, "header_name"), _list(form, "header_value")
    before = dict((stored or {}).get("headers") or {})
    headers: dict[str, str] = {}
    rows: list[tuple[str, str]] = []
    for i, name in enumerate(names):
        name = name.strip()
        value = values[i] if i < len(values) else ""
        if not name and not value:
            continue  # a blank row: the page adds its own one blank row each time
        rows.append((name, value))
        if not name:
            posted.errors[f"header_name.{len(rows) - 1}"] = (
                "give the header's name, or clear its value"
            )
            continue
        if not value:
            if name in before:
                headers[name] = MASK  # unchanged: the API keeps the stored value
                continue
            posted.errors[f"config.headers.{name}"] = "give the header's value"
            continue
        headers[name] = value
    posted.values["headers"] = rows
    if headers or before:
        posted.config["headers"] = headers


def parse_events(form: FormData, posted: Posted) -> None:
    """Events, and the seed 000 filters: manual/scheduled starts, and the finishing
    statuses and results to notify on. All boxes ticked means "any" (no filter)."""
    events = _list(form, "events")
    triggers = _list(form, "start_triggers")
    statuses = _list(form, "finish_statuses")
    results = _list(form, "finish_results")
    posted.events = events
    posted.values.update(
        events=events, start_triggers=triggers, finish_statuses=statuses, finish_results=results
    )
    if not events:
        posted.errors["events"] = "choose at least one event to notify on"
        return
    starts = [e for e in START_EVENTS if e in events]
    if starts:
        if not triggers:
            posted.errors["filters.start"] = "choose manual, scheduled or both"
        elif set(triggers) != set(TRIGGERS):
            for e in starts:
                posted.filters[e] = {"triggers": triggers}
    if FINISHED in events:
        spec: dict[str, Any] = {}
        if not statuses:
            posted.errors["filters.test.finished.statuses"] = "choose at least one status"
        elif {int(s) for s in statuses if s.lstrip("-").isdigit()} != set(FINISH_STATUSES):
            spec["statuses"] = sorted(int(s) for s in statuses if s.lstrip("-").isdigit())
        if not results:
            posted.errors["filters.test.finished.results"] = "choose passed, failed or both"
        elif set(results) != set(RESULTS):
            spec["results"] = results
        if spec:
            posted.filters[FINISHED] = spec


def keep_k6cloud_selection(posted: Posted, stored_filters: Mapping[str, Any]) -> None:
    """The form has no boxes for Grafana Cloud k6's identifiers (the ``k6cloud_events``
    filter, set through the API): a stored selection stays for the events still ticked,
    instead of widening to every start or end when the page is saved."""
    for event in posted.events:
        chosen = (stored_filters.get(event) or {}).get("k6cloud_events")
        if chosen:
            posted.filters.setdefault(event, {})["k6cloud_events"] = list(chosen)


def parse_channel_form(kind: KindForm, form: FormData, stored: Mapping[str, Any] | None) -> Posted:
    posted = Posted()
    posted.name = _text(form, "name").strip()
    posted.enabled = _text(form, "enabled") != "disabled"
    posted.values.update(name=posted.name, enabled=posted.enabled)
    parse_fields(kind, form, stored, posted)
    if kind.headers:
        parse_headers(form, stored, posted)
    if kind.template:
        text = _text(form, "template")
        posted.values["template"] = text
        if text.strip():
            posted.config["template"] = text
        elif stored is not None:
            posted.config["template"] = None
    if not posted.name:
        posted.errors["name"] = "give the channel a name people recognise, such as 'CI hook'"
    parse_events(form, posted)
    return posted


def stored_values(kind: KindForm, channel: Mapping[str, Any]) -> dict[str, Any]:
    """The form's values for a stored channel (the API's masked view): secrets blank."""
    config = channel.get("config") or {}
    values: dict[str, Any] = {"name": channel.get("name", ""), "enabled": channel.get("enabled")}
    for f in kind.fields:
        value = config.get(f.key)
        if f.input == "secret":
            values[f.key] = ""
        elif f.input == "checkbox":
            values[f.key] = bool(value)
        elif f.input == "list":
            values[f.key] = ", ".join(value or [])
        elif f.key == "config_json":
            import orjson

            values[f.key] = orjson.dumps(config, option=orjson.OPT_INDENT_2).decode()
        else:
            values[f.key] = "" if value is None else str(value)
    values["headers"] = [(name, "") for name in (config.get("headers") or {})]
    values["template"] = config.get("template") or ""
    values.update(filter_values(channel.get("events") or [], channel.get("filters") or {}))
    return values


def new_values(kind: KindForm) -> dict[str, Any]:
    k = get_kind(kind.kind)
    defaults = dict(k.defaults)
    values = stored_values(
        kind,
        {
            "name": kind.title,
            "enabled": True,
            "config": defaults,
            # Ticked as the API subscribes a channel that names no events.
            "events": validated_events(k, defaults, None),
            "filters": {},
        },
    )
    return values


# -- project overrides (seed 003) ------------------------------------------------------


def parse_override_form(
    kind: KindForm, form: FormData, own: Mapping[str, Any]
) -> tuple[bool | None, dict[str, Any], dict[str, Any]]:
    """(send messages, config, values) of a project's settings form. A blank value
    inherits the organization's: a project never overrides with "empty" (seed 003)."""
    choice = _text(form, "send_messages")
    enabled = {"enabled": True, "disabled": False}.get(choice)
    values: dict[str, Any] = {"send_messages": choice or "inherit"}
    config: dict[str, Any] = {}
    for f in kind.fields:
        if not f.override:
            continue
        raw = _text(form, f.key)
        values[f.key] = raw
        if f.input == "secret":
            if raw.strip():
                config[f.key] = raw.strip()
            elif own.get(f.key) and not form.get(f"clear_{f.key}"):
                config[f.key] = own[f.key]  # the masked value: "unchanged"
            continue
        raw = raw.strip()
        if not raw:
            continue
        if f.input == "checkbox":
            config[f.key] = raw == "yes"
        elif f.input == "number":
            config[f.key] = int(raw) if raw.isdigit() else raw
        elif f.input == "list":
            config[f.key] = split_list(raw)
        else:
            config[f.key] = raw
    return enabled, config, values


def override_values(kind: KindForm, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """The project settings form for a stored override (masked): secrets blank."""
    own = dict((override or {}).get("config") or {})
    enabled = (override or {}).get("enabled")
    values: dict[str, Any] = {
        "send_messages": "inherit" if enabled is None else ("enabled" if enabled else "disabled")
    }
    for f in kind.fields:
        value = own.get(f.key)
        if f.input == "secret" or value is None:
            values[f.key] = ""
        elif f.input == "checkbox":
            values[f.key] = "yes" if value else "no"
        elif f.input == "list":
            values[f.key] = ", ".join(value)
        else:
            values[f.key] = str(value)
    return values


# -- the error summary -----------------------------------------------------------------


@dataclass(frozen=True)
class ErrorLink:
    """One line of a refused form's summary: the field's label, linked to the field."""

    label: str
    message: str
    target: str | None  # the id of the control to focus; None when no field shows the value


# Filter checkboxes, by the API's path of their list: (label, id of the first box).
_FILTER_FIELDS = {
    "filters.start": ("Test starts", "f-start-triggers-0"),
    "filters.test.finished.statuses": ("Finished tests: statuses", "f-finish-statuses-0"),
    "filters.test.finished.results": ("Finished tests: results", "f-finish-results-0"),
}


def error_links(
    kind: KindForm, errors: Mapping[str, str], values: Mapping[str, Any]
) -> list[ErrorLink]:
    """The summary of a refused form in the words of the form: each error under the label
    of its field (not the API's path, ``config.url``), linked to that field's control."""
    fields = {f.key: f for f in kind.fields}
    rows = [name for name, _ in values.get("headers") or []]
    out: list[ErrorLink] = []
    for key, message in errors.items():
        plain = key.removeprefix("config.")
        if key == "name":
            out.append(ErrorLink("Name", message, "f-name"))
        elif plain in fields:
            out.append(ErrorLink(fields[plain].label, message, f"f-{plain}"))
        elif key == "config.template":
            out.append(ErrorLink("Template", message, "f-template"))
        elif key.startswith("config.headers."):
            name = key.removeprefix("config.headers.")
            i = rows.index(name) if name in rows else None
            about_value = "value" in message.split(";", 1)[0]
            part = "value" if about_value else "name"
            target = f"f-header-{part}-{i}" if i is not None else "f-header-name-0"
            out.append(ErrorLink(f"Header {name}", message, target))
        elif key.startswith("header_name."):
            out.append(ErrorLink("Custom headers", message, f"f-header-name-{key.split('.')[1]}"))
        elif key == "config.headers":
            out.append(ErrorLink("Custom headers", message, "f-header-name-0"))
        elif key == "events" or key.startswith("events["):
            out.append(ErrorLink("Events", message, "f-event-0"))
        elif key in _FILTER_FIELDS:
            label, target = _FILTER_FIELDS[key]
            out.append(ErrorLink(label, message, target))
        elif key.startswith("filters."):
            out.append(ErrorLink("Filters", message, "f-start-triggers-0"))
        else:  # a value the form does not show (install data, rate_limit): the API's path
            out.append(ErrorLink(key, message, None))
    return out
