"""JSON decoding that a hostile payload cannot turn into a crash, a hang or ambiguity.

* UTF-8 only (a leading BOM is tolerated); duplicate object keys are refused, so no two
  readers can see different values for one field; ``NaN``/``Infinity`` and numbers that
  overflow to infinity are refused.
* Nesting depth, number of values and string lengths are bounded (:class:`IngestLimits`;
  by default only the depth binds within the message size limit).
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
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteError(text)
    return value


def _constant(text: str) -> Any:
    raise _NonFiniteError(text)


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
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_finite_float,
            parse_constant=_constant,
        )
    except RecursionError:
        raise Rejection(Reason.TOO_DEEP, "JSON nested too deeply", where) from None
    except _DuplicateKeyError:
        raise Rejection(Reason.NOT_JSON, "an object repeats a key", where) from None
    except _NonFiniteError:
        raise Rejection(Reason.NOT_JSON, "NaN and infinite numbers are not JSON", where) from None
    except ValueError as error:
        position = f" at character {error.pos}" if isinstance(error, json.JSONDecodeError) else ""
        raise Rejection(Reason.NOT_JSON, f"not valid JSON{position}", where) from None
    check_shape(value, limits, where=where)
    return value


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
