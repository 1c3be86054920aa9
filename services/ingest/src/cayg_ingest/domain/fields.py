"""Reading the few fields ingest must trust, with a :class:`Rejection` naming the path."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from cayg_ingest.domain.model import Reason, Rejection
from cayg_shared.schema import parse_sis_datetime

_PRINTABLE_ID: Final = re.compile(r"^[\x21-\x7e]+$")


def get_object(container: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """A required JSON object member."""
    value = container.get(key)
    if value is None:
        raise Rejection(Reason.MISSING_FIELD, f"{path} is required", path)
    if not isinstance(value, dict):
        raise Rejection(Reason.INVALID_FIELD, f"{path} must be an object", path)
    return value


def get_text(
    container: dict[str, Any],
    key: str,
    path: str,
    *,
    max_length: int = 256,
    required: bool = True,
    allow_number: bool = False,
) -> str | None:
    """A string member, stripped; ``allow_number`` also takes an integer (Ethos ids)."""
    value = container.get(key)
    if value is None:
        if required:
            raise Rejection(Reason.MISSING_FIELD, f"{path} is required", path)
        return None
    if allow_number and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str):
        raise Rejection(Reason.INVALID_FIELD, f"{path} must be a string", path)
    text = value.strip()
    if not text:
        if required:
            raise Rejection(Reason.MISSING_FIELD, f"{path} is empty", path)
        return None
    if len(text) > max_length:
        raise Rejection(Reason.INVALID_FIELD, f"{path} is longer than {max_length}", path)
    return text


def require_text(
    container: dict[str, Any],
    key: str,
    path: str,
    *,
    max_length: int = 256,
    allow_number: bool = False,
) -> str:
    """A required, non-empty string member."""
    text = get_text(container, key, path, max_length=max_length, allow_number=allow_number)
    assert text is not None  # required=True never returns None
    return text


def require_identifier(container: dict[str, Any], key: str, path: str) -> str:
    """A message id: printable ASCII without spaces, at most 256 characters."""
    text = require_text(container, key, path, allow_number=True)
    if not _PRINTABLE_ID.match(text):
        raise Rejection(Reason.INVALID_FIELD, f"{path} must be printable ASCII", path)
    return text


def get_time(
    container: dict[str, Any], key: str, path: str, *, default_tz: tzinfo = UTC
) -> datetime | None:
    """An optional timestamp in any format SIS send (see :mod:`cayg_shared.schema.dates`);
    one without offset is read in ``default_tz`` (the tenant's zone)."""
    text = get_text(container, key, path, max_length=64, required=False)
    if text is None:
        return None
    try:
        return parse_sis_datetime(text, default_tz=default_tz)
    except ValueError:
        raise Rejection(
            Reason.INVALID_FIELD, f"{path} is not an ISO 8601 date-time", path
        ) from None
