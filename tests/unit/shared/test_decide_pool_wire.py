"""What crosses a decision worker's socket: records and decisions survive the trip."""

from __future__ import annotations

import pickle
from typing import TypeVar

import pytest

from cayg_shared.batching import Failure, Note, Outbound, Outcome
from cayg_shared.decide_pool import (
    _decisions_from_wire,
    _decisions_to_wire,
    _records_from_wire,
    _records_to_wire,
)
from cayg_shared.service import InboundRecord

pytestmark = pytest.mark.unit

T = TypeVar("T")


def _trip(value: T) -> T:
    """``value`` after pickling, as a frame carries it."""
    back: T = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return back


def test_records_cross_whole() -> None:
    records = [
        InboundRecord("t", 2, 41, 1_700_000_000_000, b"k", b"v", (("h", b"\xff"),)),
        InboundRecord("t", 0, 7, None, None, None, ()),
    ]
    assert _records_from_wire(_trip(_records_to_wire(records))) == records


def test_decisions_cross_whole_in_order() -> None:
    decisions: list[Outcome | Failure] = [
        Outcome(
            [Outbound("out", b"k", b"{}", (("a", b"1"),)), Outbound("out", None, b"[]", ())],
            "mapped",
            "tenant-a",
            (("changes", ("tenant-a", "credential_award", "upsert")),),
            Note("envelope normalized", {"offset": 3, "changes": 2}),
        ),
        Failure("internal-error", "KeyError: 'x'", "KeyError"),
        Outcome([], "rejected:empty"),
    ]
    back = _decisions_from_wire(_trip(_decisions_to_wire(decisions)))
    assert back == decisions
    assert [type(item) for item in back] == [Outcome, Failure, Outcome]
