"""Dates and times as student-information systems really send them.

Accepted date-times: ISO 8601 / RFC 3339 with ``Z`` or an offset
(``2025-02-03T14:05:11Z``, ``…+05:30``, ``…+0530``), with any number of fractional digits
(.NET sends seven), Ethos's PostgreSQL style ``2017-12-12 22:37:44.242116+00``, without a
zone (read in the tenant's time zone), and a bare date (midnight in that zone). Results
are timezone-aware and in UTC, so they compare and serialize the same everywhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import Final

_MAX_LENGTH: Final = 64
_MIN_YEAR: Final = 1900
_MAX_YEAR: Final = 2200


def parse_sis_datetime(value: str, *, default_tz: tzinfo = UTC) -> datetime:
    """An aware UTC datetime from an SIS timestamp; ``ValueError`` if it is not one.

    A value without zone is taken to be in ``default_tz`` (the tenant's zone).
    """
    text = value.strip()
    if not text or len(text) > _MAX_LENGTH:
        raise ValueError("not a date-time")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO 8601 date-time") from None
    if not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        raise ValueError(f"year outside {_MIN_YEAR}-{_MAX_YEAR}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=default_tz)
    return parsed.astimezone(UTC)


def parse_sis_date(value: str) -> date:
    """A calendar date from ``YYYY-MM-DD`` (or a date-time, keeping its *local* date).

    The local date is kept on purpose: an award ``earnedOn`` 2024-12-14T00:00-06:00 was
    earned on the 14th where it happened, whatever the date in UTC.
    """
    text = value.strip()
    if len(text) < 10 or len(text) > _MAX_LENGTH:
        raise ValueError("not a date")
    try:
        parsed = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO 8601 date") from None
    result = parsed.date() if isinstance(parsed, datetime) else parsed
    if not _MIN_YEAR <= result.year <= _MAX_YEAR:
        raise ValueError(f"year outside {_MIN_YEAR}-{_MAX_YEAR}")
    return result
