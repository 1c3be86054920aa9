"""The per-record shortcuts of the shared code give exactly what the general path gives."""

from __future__ import annotations

import random
import re
import uuid

import pytest

from cayg_shared import headers
from cayg_shared.ids import CAYG_NAMESPACE, derived_id
from cayg_shared.schema import _base

pytestmark = pytest.mark.unit

# Every ASCII control character, tab and line breaks among them; composed and decomposed
# accents; a no-break space; scripts other than Latin; an emoji; C1 controls.
_PIECES = [chr(c) for c in (*range(32), 127)] + [
    "a",
    "Z",
    "9",
    " ",
    "-",
    "/",
    "é",
    "e\u0301",
    "A\u030a",
    "\u00a0",
    "日本",
    "\u0627",
    "\U0001f393",
    "\u0085",
    "\u009f",
]


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["", "plain ascii", "tab\tinside", "line\nbreak", "carriage\rreturn"]
    texts += [
        "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 12))) for _ in range(count)
    ]
    return texts


def _outcome(check: object, value: str) -> tuple[str, str]:
    try:
        return "ok", check(value)  # type: ignore[operator]
    except ValueError as error:
        return "refused", str(error)


@pytest.mark.parametrize("seed", range(4))
def test_single_line_text_checks_agree_with_the_two_general_checks(seed: int) -> None:
    def general(value: str) -> str:
        return _base._single_line(_base._nfc(value))

    for text in _texts(2_000, seed):
        assert _outcome(_base._nfc_single_line, text) == _outcome(general, text), repr(text)


def test_free_text_of_ascii_is_kept_and_other_text_normalized() -> None:
    assert _base._nfc("plain\ttext\nwith lines") == "plain\ttext\nwith lines"
    assert _base._nfc("e\u0301") == "é"
    with pytest.raises(ValueError, match="control characters"):
        _base._nfc("bell\x07")


def test_derived_ids_are_the_uuid5_of_the_joined_parts() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        parts = [
            "".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 20)))
            for _ in range(rng.randrange(1, 5))
        ]
        expected = uuid.uuid5(CAYG_NAMESPACE, "\x1f".join(parts))
        got = derived_id(*parts)
        assert got == expected
        assert got.version == 5
        assert str(got) == str(expected)


def test_a_child_span_keeps_the_trace_and_gets_a_fresh_non_zero_span_id() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    spans = {headers.child_traceparent(parent) for _ in range(1_000)}

    assert len(spans) == 1_000
    for span in spans:
        match = re.fullmatch(r"00-4bf92f3577b34da6a3ce929d0e0e4736-([0-9a-f]{16})-01", span)
        assert match is not None
        assert match.group(1) != "0" * 16
