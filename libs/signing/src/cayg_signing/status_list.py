"""W3C Bitstring Status List v1.0: the ``encodedList`` of a ``BitstringStatusList``.

A status list is a bitstring, one bit per credential (``statusSize`` 1). Bit ``i`` is bit
``7 - i % 8`` of byte ``i // 8``: index 0 is the left-most (most significant) bit of the
first byte. ``encodedList`` is the multibase base64url form (prefix ``u``, no padding) of
the GZIP-compressed bitstring; a list holds at least 131,072 entries (16 KiB), so that one
credential's index hides among many (group privacy).

Encoding is deterministic (GZIP with a zero modification time and no file name): the same
bits always give the same ``encodedList``, so a publisher can tell "unchanged" by text.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_STATUS_LIST_BYTES",
    "MIN_STATUS_LIST_ENTRIES",
    "StatusListError",
    "bitstring",
    "decode_status_list",
    "encode_status_list",
    "status_bit",
]

#: The smallest list the specification allows (16 KiB of bits).
MIN_STATUS_LIST_ENTRIES: Final = 131_072
#: The most a decoded list may expand to: a hostile ``encodedList`` (a GZIP bomb) stops here.
MAX_STATUS_LIST_BYTES: Final = 16 * 2**20


class StatusListError(ValueError):
    """An ``encodedList`` is not multibase base64url GZIP, too large, or an index is out
    of the list's range."""


def bitstring(set_indexes: Iterable[int], entries: int = MIN_STATUS_LIST_ENTRIES) -> bytes:
    """A bitstring of ``entries`` bits (a multiple of 8) with the given indexes set.

    Raises:
        StatusListError: ``entries`` is not a positive multiple of 8, or an index is
            outside ``[0, entries)``.
    """
    if entries <= 0 or entries % 8:
        raise StatusListError(f"a list holds a positive multiple of 8 entries, not {entries}")
    bits = bytearray(entries // 8)
    for index in set_indexes:
        if not 0 <= index < entries:
            raise StatusListError(f"index {index} is outside the list of {entries} entries")
        bits[index // 8] |= 0x80 >> (index % 8)
    return bytes(bits)


def encode_status_list(bits: bytes) -> str:
    """``encodedList`` of a bitstring: ``"u"`` + base64url (no padding) of its GZIP."""
    compressed = gzip.compress(bits, compresslevel=9, mtime=0)
    return "u" + base64.urlsafe_b64encode(compressed).decode("ascii").rstrip("=")


def decode_status_list(encoded: str, *, max_bytes: int = MAX_STATUS_LIST_BYTES) -> bytes:
    """The bitstring of an ``encodedList``; never expands beyond ``max_bytes``.

    Raises:
        StatusListError: not ``u``-prefixed base64url, not GZIP, or larger than ``max_bytes``.
    """
    if not isinstance(encoded, str) or not encoded.startswith("u"):
        raise StatusListError("encodedList must be a multibase base64url string ('u' prefix)")
    text = encoded[1:]
    if not text or any(c in text for c in "=+/"):
        raise StatusListError("encodedList is not unpadded base64url")
    try:
        compressed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise StatusListError(f"encodedList is not base64url: {exc}") from None
    # Decompressed incrementally with a bound: a small input must not expand without limit.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as exc:
        raise StatusListError(f"encodedList is not GZIP data: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise StatusListError(f"encodedList expands beyond {max_bytes} bytes")
    if not inflater.eof:
        raise StatusListError("encodedList is truncated GZIP data")
    return out


def status_bit(bits: bytes, index: int) -> bool:
    """Whether bit ``index`` of a bitstring is set.

    Raises:
        StatusListError: ``index`` is outside the list.
    """
    if not 0 <= index < len(bits) * 8:
        raise StatusListError(f"index {index} is outside the list of {len(bits) * 8} entries")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))
