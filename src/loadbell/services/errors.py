"""What an operation refuses, as domain errors: the edges turn them into answers.

A service raises one of these with a message written for the person reading it (what was
wrong, which field, what to do); ``api/errors.py`` turns it into the JSON error body with its
HTTP status, ``web/`` into a page or a message beside the form field. ``code`` is the
machine-readable kind of refusal (``not_found``, ``invalid``, or a more precise one such as
``slack_declined``).
"""

from __future__ import annotations


class ServiceError(Exception):
    code = "error"

    def __init__(self, message: str, field: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # the dotted path of the field at fault (``config.url``), if one
        if code is not None:
            self.code = code


class NotFound(ServiceError):
    """No such thing, or not one the caller may see (never told apart)."""

    code = "not_found"


class Forbidden(ServiceError):
    """The caller sees it but may not do this (a member changing a channel)."""

    code = "forbidden"


class Conflict(ServiceError):
    """It cannot be done in the state things are in (a run that already ended)."""

    code = "conflict"


class Invalid(ServiceError):
    """A value is not acceptable; ``field`` names it."""

    code = "invalid"


class BadRequest(ServiceError):
    """The request cannot be understood as it is (a Slack callback without its state)."""

    code = "bad_request"


class UpstreamFailed(ServiceError):
    """A service loadbell relies on (Slack's Web API) failed or refused."""

    code = "upstream_failed"


class NotConfigured(ServiceError):
    """This installation lacks a setting the operation needs (the Slack app's client id)."""

    code = "not_configured"


def not_found(what: str, ident: object) -> NotFound:
    return NotFound(f"{what} {ident} not found")


def invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", field)


def forbidden(message: str) -> Forbidden:
    return Forbidden(message)


def conflict(message: str, field: str | None = None) -> Conflict:
    return Conflict(message, field)
