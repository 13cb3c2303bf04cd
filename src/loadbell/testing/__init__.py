"""Test doubles shipped with loadbell so users can test their own set-ups."""

from loadbell.testing.receiver import Received, RecordingReceiver

__all__ = ["Received", "RecordingReceiver"]
