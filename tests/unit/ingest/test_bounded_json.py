"""The bounded JSON decoder skips its walk over the decoded value only when the text's size
proves no limit can be reached: whatever the value and the limits, a skipped walk would
have passed, and a value over a limit is refused with the walk's reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cayg_ingest.domain import IngestLimits, Reason, Rejection
from cayg_ingest.domain.bounded_json import _within_limits_by_size, check_shape, decode_json

pytestmark = pytest.mark.unit

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=40,
)
tight_limits = st.builds(
    IngestLimits,
    max_json_depth=st.integers(min_value=1, max_value=8),
    max_json_nodes=st.integers(min_value=1, max_value=60),
    max_string_chars=st.integers(min_value=0, max_value=40),
)


@given(value=json_values, limits=tight_limits, indent=st.sampled_from([None, 1]))
def test_a_text_small_enough_to_skip_the_walk_always_passes_it(
    value: Any, limits: IngestLimits, indent: int | None
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    if _within_limits_by_size(text, limits):
        check_shape(json.loads(text), limits)


def _walk_refusal(value: Any, limits: IngestLimits) -> str | None:
    try:
        check_shape(value, limits)
    except Rejection as rejection:
        return rejection.reason
    return None


@given(value=json_values, limits=tight_limits)
def test_decoding_refuses_exactly_what_the_walk_refuses(value: Any, limits: IngestLimits) -> None:
    raw = json.dumps(value).encode()
    refusal = _walk_refusal(value, limits)
    if refusal is None:
        assert decode_json(raw, limits) == value
    else:
        with pytest.raises(Rejection) as decoded:
            decode_json(raw, limits)
        assert decoded.value.reason == refusal


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a": 1, "a": 2}', Reason.NOT_JSON),
        (b'{"a": {"b": 1, "b": 1}}', Reason.NOT_JSON),
        (b"[" * 40 + b"]" * 40, Reason.TOO_DEEP),
        (b'{"n": NaN}', Reason.NOT_JSON),
    ],
)
def test_duplicate_keys_depth_and_non_finite_numbers_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejection) as refused:
        decode_json(raw, IngestLimits())
    assert refused.value.reason == reason
