"""JSON decoding that a hostile payload cannot turn into a crash, a hang or ambiguity.

* UTF-8 only (a leading BOM is tolerated); duplicate object keys are refused, so no two
  readers can see different values for one field; ``NaN``/``Infinity`` and numbers that
  overflow to infinity are refused.
* Nesting depth, number of values and string lengths are bounded (:class:`IngestLimits`;
  by default only the depth binds within the message size limit).

Cost: the decoding is the standard library's C scanner; duplicate keys are caught by a hook
that builds each object in C and compares sizes. The walk over the decoded value that checks
the limits is skipped when the text itself proves no limit can be reached
(:func:`_within_limits_by_size`), which is the case for nearly every real message.
"""

from __future__ import annotations

import json
import math
from typing import Any

from cayg_ingest.domain.model import IngestLimits, Reason, Rejection

_BOM = b"\xef\xbb\xbf"


class _DuplicateKeyError(ValueError):
    pass


class _NonFiniteError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # A repeated key collapsed into one entry.
        raise _DuplicateKeyError
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteError(text)
    return value


def _constant(text: str) -> Any:
    raise _NonFiniteError(text)


#: One decoder for every message (``json.loads`` with hooks builds a new one per call).
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_float=_finite_float, parse_constant=_constant
)


def strip_bom(raw: bytes) -> bytes:
    """``raw`` without a UTF-8 byte-order mark."""
    return raw[len(_BOM) :] if raw.startswith(_BOM) else raw


def decode_json(raw: bytes, limits: IngestLimits, *, where: str = "$") -> Any:
    """The JSON value in ``raw``, within ``limits``; :class:`Rejection` otherwise."""
    try:
        text = strip_bom(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Rejection(Reason.NOT_JSON, "the payload is not UTF-8 text", where) from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise Rejection(Reason.TOO_DEEP, "JSON nested too deeply", where) from None
    except _DuplicateKeyError:
        raise Rejection(Reason.NOT_JSON, "an object repeats a key", where) from None
    except _NonFiniteError:
        raise Rejection(Reason.NOT_JSON, "NaN and infinite numbers are not JSON", where) from None
    except ValueError as error:
        position = f" at character {error.pos}" if isinstance(error, json.JSONDecodeError) else ""
        raise Rejection(Reason.NOT_JSON, f"not valid JSON{position}", where) from None
    if not _within_limits_by_size(text, limits):
        check_shape(value, limits, where=where)
    return value


def _within_limits_by_size(text: str, limits: IngestLimits) -> bool:
    """Whether ``text`` is too small to break any of ``limits``, whatever it holds.

    Each bound holds for any JSON text of ``n`` characters:

    * values: a scalar takes at least one character, a container two plus one separator
      between members, so ``n >= 2 * values - 1``;
    * strings and keys: a decoded string is never longer than its JSON spelling;
    * depth: every level of nesting opens with a ``[`` or ``{`` (counting those inside
      strings too only overestimates).
    """
    n = len(text)
    return (
        (n + 1) // 2 <= limits.node_limit
        and n <= limits.string_limit
        and text.count("[") + text.count("{") <= limits.max_json_depth
    )


def check_shape(value: Any, limits: IngestLimits, *, where: str = "$") -> None:
    """Refuse JSON deeper, bigger or with longer strings than ``limits`` allow."""
    nodes = 0
    node_limit, string_limit = limits.node_limit, limits.string_limit
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > node_limit:
            raise Rejection(Reason.TOO_COMPLEX, "too many JSON values", where)
        if isinstance(item, dict):
            if depth > limits.max_json_depth:
                raise Rejection(Reason.TOO_DEEP, "JSON nested too deeply", where)
            for key, child in item.items():
                if len(key) > string_limit:
                    raise Rejection(Reason.TOO_COMPLEX, "an object key is too long", where)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > limits.max_json_depth:
                raise Rejection(Reason.TOO_DEEP, "JSON nested too deeply", where)
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and len(item) > string_limit:
            raise Rejection(Reason.TOO_COMPLEX, "a string is too long", where)
