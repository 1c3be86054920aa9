"""Kafka header names that travel with every message, and trace-context helpers.

Trace and correlation ids ride in headers, never in payloads, so that every service can
read them without decoding the body. CloudEvents' Kafka binding names attributes
``ce_<name>``; W3C Trace Context gives ``traceparent``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import Final

CE_ID: Final = "ce_id"
CE_SOURCE: Final = "ce_source"
CE_TYPE: Final = "ce_type"
CE_SPECVERSION: Final = "ce_specversion"
CE_TIME: Final = "ce_time"
CE_SUBJECT: Final = "ce_subject"
CE_DATACONTENTTYPE: Final = "ce_datacontenttype"
CONTENT_TYPE: Final = "content-type"
TRACEPARENT: Final = "traceparent"
CORRELATION_ID: Final = "cayg_correlation_id"
CAUSATION_ID: Final = "cayg_causation_id"
EVENT_ID: Final = "cayg_event_id"
TENANT: Final = "cayg_tenant"
#: Set on DLQ and retry messages: which stage parked it and why.
DLQ_REASON: Final = "cayg_dlq_reason"
NOT_BEFORE: Final = "cayg_not_before"
ATTEMPT: Final = "cayg_attempt"

_TRACEPARENT_RE: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

Headers = Mapping[str, str]


def decode_headers(raw: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """Kafka headers as text; the last value of a repeated name wins, undecodable ones drop."""
    out: dict[str, str] = {}
    for name, value in raw:
        if value is None:
            continue
        try:
            out[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def new_traceparent() -> str:
    """A fresh W3C traceparent with a random, non-zero trace id and span id, sampled.

    From Python's generator, as the span ids (:func:`_span_id`): trace ids need to be
    unique, not secret, and ingest makes one for every SIS message that comes without one
    (two system calls each through :mod:`secrets`, about a tenth of ingest's decision).
    """
    return f"00-{random.getrandbits(128) or 1:032x}-{_span_id()}-01"


def child_traceparent(parent: str | None) -> str:
    """A traceparent for a new span in the same trace as ``parent`` (a new trace if invalid)."""
    match = _TRACEPARENT_RE.match(parent or "")
    if match is None or match.group(1) == "0" * 32:
        return new_traceparent()
    return f"00-{match.group(1)}-{_span_id()}-{match.group(3)}"


def _span_id() -> str:
    """A random, non-zero 8-byte span id in hex.

    Span ids need to be unique, not secret: Python's generator (seeded from the OS, and
    re-seeded in a forked child) costs a fraction of a system call per output record.
    """
    return f"{random.getrandbits(64) or 1:016x}"


def trace_id(traceparent: str | None) -> str | None:
    """The trace id part of a traceparent, for logs."""
    match = _TRACEPARENT_RE.match(traceparent or "")
    return match.group(1) if match else None
