"""Helpers of publish's integration tests: a settable clock, fake target servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """A clock that moves only when told (claim expiry, token expiry)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.now += delta
