"""The explicit registry of channel kinds. Adding a kind means adding one line here."""

from __future__ import annotations

from enum import StrEnum

from loadbell.channels.apprise import AppriseKind
from loadbell.channels.base import ChannelKind
from loadbell.channels.discord import DiscordKind
from loadbell.channels.email import EmailKind
from loadbell.channels.hipchat import HipChatKind
from loadbell.channels.mattermost import MattermostKind
from loadbell.channels.slack import SlackKind
from loadbell.channels.slack_app import SlackAppKind
from loadbell.channels.teams import TeamsKind
from loadbell.channels.webhook import WebhookKind


class KindName(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    SLACK_APP = "slack_app"
    HIPCHAT = "hipchat"
    TEAMS = "teams"
    DISCORD = "discord"
    MATTERMOST = "mattermost"  # Rocket.Chat too
    EMAIL = "email"
    APPRISE = "apprise"


KINDS: dict[KindName, ChannelKind] = {
    KindName.WEBHOOK: WebhookKind(),
    KindName.SLACK: SlackKind(),
    KindName.SLACK_APP: SlackAppKind(),
    KindName.HIPCHAT: HipChatKind(),
    KindName.TEAMS: TeamsKind(),
    KindName.DISCORD: DiscordKind(),
    KindName.MATTERMOST: MattermostKind(),
    KindName.EMAIL: EmailKind(),
    KindName.APPRISE: AppriseKind(),
}


def get_kind(name: str) -> ChannelKind:
    try:
        return KINDS[KindName(name)]
    except ValueError:
        raise KeyError(
            f"unknown channel kind '{name}'; available kinds: {', '.join(k.value for k in KINDS)}"
        ) from None
