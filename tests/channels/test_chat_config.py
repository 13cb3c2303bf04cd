"""Chat kinds validate their config with field names and messages a person can act on."""

from __future__ import annotations

from typing import Any

import pytest

from channels.cases import message
from loadbell.channels.rate_limit import configured_rate
from loadbell.channels.registry import get_kind
from loadbell.values import ConfigError, Message, Rate

URL = "https://chat.example.com/hooks/abc"
URL_KEY = {
    "slack": "webhook_url",
    "hipchat": "url",
    "teams": "url",
    "discord": "url",
    "mattermost": "url",
}


@pytest.mark.parametrize("kind", list(URL_KEY))
@pytest.mark.parametrize(
    ("value", "message_part"),
    [
        (None, "is required"),  # left out
        ("", "is required"),  # emptied
        ("/hooks/abc", "absolute http:// or https:// URL"),  # relative
        ("ftp://chat.example.com/x", "absolute http:// or https:// URL"),  # wrong scheme
        ("https://" + "a" * 2050 + ".com", "longer than 2048"),
        (42, "is required"),  # not a string
        ("https://127.1/hooks/abc", "write 127.0.0.1 instead"),  # an IPv4 shorthand
        ("https://chat example.com/x", "not a DNS name"),  # a space in the host
        ("https:///hooks/abc", "has no host"),
    ],
)
def test_bad_urls_are_refused_by_field(kind: str, value: Any, message_part: str) -> None:
    """A missing or unusable webhook URL names config.<key> and says what to give."""
    key = URL_KEY[kind]
    config = {} if value is None else {key: value}
    with pytest.raises(ConfigError) as err:
        get_kind(kind).validate(config)
    assert err.value.field == f"config.{key}"
    assert message_part in err.value.message


@pytest.mark.parametrize("kind", list(URL_KEY))
def test_unknown_keys_are_refused(kind: str) -> None:
    """A typo in a key is an error listing the keys the kind takes."""
    with pytest.raises(ConfigError) as err:
        get_kind(kind).validate({URL_KEY[kind]: URL, "chanel": "#ops"})
    assert err.value.field == "config.chanel"
    assert URL_KEY[kind] in err.value.message and "rate_limit" in err.value.message


@pytest.mark.parametrize("kind", list(URL_KEY))
def test_url_is_secret_and_cleaned(kind: str) -> None:
    """The URL (it carries the token) is a secret key, and is stored trimmed."""
    k = get_kind(kind)
    assert URL_KEY[kind] in k.secret_keys
    assert k.validate({URL_KEY[kind]: f"  {URL}  "})[URL_KEY[kind]] == URL


@pytest.mark.parametrize("kind", list(URL_KEY))
@pytest.mark.parametrize(
    ("rate_limit", "field"),
    [
        ({"count": 0, "per": 1}, "config.rate_limit.count"),  # nothing may go
        ({"count": 1, "per": 0}, "config.rate_limit.per"),  # zero-length window
        ({"count": 1}, "config.rate_limit"),  # no window
        ({"count": 1, "per": 1, "burst": 0}, "config.rate_limit.burst"),
        ("1/s", "config.rate_limit"),  # not an object
    ],
)
def test_bad_rate_limits_are_refused(kind: str, rate_limit: Any, field: str) -> None:
    """A bad per-channel ``rate_limit`` names the exact field."""
    with pytest.raises(ConfigError) as err:
        get_kind(kind).validate({URL_KEY[kind]: URL, "rate_limit": rate_limit})
    assert err.value.field == field


@pytest.mark.parametrize("kind", list(URL_KEY))
def test_rate_limit_override_is_kept(kind: str) -> None:
    """A valid ``rate_limit`` is kept, normalised, for the worker's pacer."""
    clean = get_kind(kind).validate({URL_KEY[kind]: URL, "rate_limit": {"count": 2, "per": 1}})
    assert clean["rate_limit"] == {"count": 2, "per": 1.0}


# kind -> its default pace per destination (None: unpaced unless configured)
DEFAULT_RATES: dict[str, Rate | None] = {
    "slack": Rate(count=1, per=1.0, burst=3),  # Slack: 1 message/s per webhook, short bursts
    "teams": Rate(count=4, per=1.0),  # Teams: 4 per second per webhook
    "discord": Rate(count=5, per=2.0),  # Discord: 5 per 2 s per webhook
    "hipchat": None,  # self-hosted servers set their own limits
    "mattermost": None,  # likewise
}


@pytest.mark.parametrize(("kind", "rate"), list(DEFAULT_RATES.items()))
def test_default_pace_per_destination(kind: str, rate: Rate | None) -> None:
    """Each kind paces per webhook URL at its service's documented rate."""
    k: Any = get_kind(kind)
    config = k.validate({URL_KEY[kind]: URL})
    assert k.rate(config) == rate
    msg: Message = message("started")
    same = k.destination(msg, config)
    other = k.destination(msg, k.validate({URL_KEY[kind]: URL + "2"}))
    assert same != other
    assert "abc" not in same  # the key is a digest: no token in it


@pytest.mark.parametrize("kind", list(URL_KEY))
def test_rate_limit_is_read_as_a_rate(kind: str) -> None:
    """A kept ``rate_limit`` reads back as the Rate the pacer uses. That it replaces the
    kind's default and spaces deliveries is shown end to end in test_chat_delivery.py
    (test_rate_limit_spaces_one_destination_only)."""
    k: Any = get_kind(kind)
    config = k.validate({URL_KEY[kind]: URL, "rate_limit": {"count": 2, "per": 10, "burst": 1}})
    assert configured_rate(config) == Rate(count=2, per=10.0, burst=1)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"notify": "yes"}, "config.notify"),  # must be a boolean
        ({"token": "two words"}, "config.token"),
        ({"token": ""}, "config.token"),
    ],
)
def test_hipchat_options_are_checked(config: dict[str, Any], field: str) -> None:
    """HipChat's optional ``notify`` and ``token`` are type-checked."""
    with pytest.raises(ConfigError) as err:
        get_kind("hipchat").validate({"url": URL, **config})
    assert err.value.field == field
