"""Membership roles and what each may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def can_manage(self) -> bool:
        """Owners and admins create and change channels and send test hooks (seed 000)."""
        return self in (Role.OWNER, Role.ADMIN)
