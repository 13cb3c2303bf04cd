"""Test doubles shipped with loadbell so users can test their own set-ups."""

from loadbell.testing.chat import (
    FakeDiscord,
    FakeHipChat,
    FakeMattermost,
    FakeSlackWebhook,
    FakeTeams,
    Reply,
)
from loadbell.testing.receiver import Received, RecordingReceiver

__all__ = [
    "FakeDiscord",
    "FakeHipChat",
    "FakeMattermost",
    "FakeSlackWebhook",
    "FakeTeams",
    "Received",
    "RecordingReceiver",
    "Reply",
]
