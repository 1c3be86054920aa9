"""Credential status: W3C Bitstring Status List entries for every credential publish issues.

Every ``AchievementCredential`` and ``ClrCredential`` carries a ``credentialStatus`` of
type ``BitstringStatusListEntry`` with ``statusPurpose`` ``revocation``: a position
(``statusListIndex``) in a list (``statusListCredential``) of one tenant and issuer. A
verifier fetches the list, checks its proof and reads the bit.

**Allocation** (in the ledger, :class:`StatusAllocator`): once per credential id, per
(tenant, issuer, purpose). Lists hold :data:`LIST_ENTRIES` (131,072) entries; when one is
full the next is opened. The n-th entry of a list takes position ``P(n)`` of a keyed
permutation :class:`IndexPermutation` (its key drawn at random when the list is opened and
kept with it), so positions are unique, never reused, and say nothing about issue order.

**Bits**: an entry is *revoked* once a renderer has seen its credential not live (an award
revoked or deleted in the SIS; a learner record withdrawn because every award is revoked).
Revocation cannot be undone (the specification says so): if the SIS reinstates the award,
the re-issued credential gets a *new* entry (the next generation) and the copies out there
stay revoked. The same "new generation" re-issues credentials after a signing key leaked
(revoke the whole list, re-render).

``suspension`` (reversible) is not used: the shared schema has no suspended state for an
award — its ``suspended`` is a status of a credential *definition* (not offered for now),
which does not make awards already held invalid.

Pure code: the standard library, ``cayg_shared`` and the signing library's bitstring
encoding.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from cayg_shared.ids import derived_id
from cayg_signing.status_list import MIN_STATUS_LIST_ENTRIES, bitstring, encode_status_list

__all__ = [
    "LIST_ENTRIES",
    "STATUS_ENTRY_TYPE",
    "CredentialStatusEntry",
    "IndexPermutation",
    "StatusAllocator",
    "StatusKind",
    "StatusPurpose",
    "StatusWindow",
    "credential_status",
    "list_id",
    "status_list_credential",
]

#: Entries per list: the specification's minimum, 16 KiB of bits.
LIST_ENTRIES: Final = MIN_STATUS_LIST_ENTRIES
STATUS_ENTRY_TYPE: Final = "BitstringStatusListEntry"
VC_CONTEXT: Final = "https://www.w3.org/ns/credentials/v2"


class StatusPurpose(StrEnum):
    """What a set bit means."""

    REVOCATION = "revocation"
    SUSPENSION = "suspension"


class StatusKind(StrEnum):
    """What kind of credential an entry belongs to (how its liveness is decided)."""

    #: An award's ``AchievementCredential``; subject: the award's entity key.
    AWARD = "award"
    #: A learner's ``ClrCredential``; subject: the learner key.
    RECORD = "record"


def list_id(tenant: str, issuer: str, purpose: StatusPurpose, list_no: int) -> str:
    """The stable, opaque id of a list (the last segment of its URL)."""
    return str(derived_id("status-list", tenant, issuer, purpose.value, str(list_no)))


class IndexPermutation:
    """A keyed permutation of ``range(size)`` (``size`` a power of two ≥ 4).

    A balanced Feistel network on the next even number of bits, with HMAC-SHA256 as round
    function, walked until the value falls in range (at most a few steps on average): a
    bijection, so ``position(0..size-1)`` hands out every index exactly once.
    """

    ROUNDS: Final = 6

    def __init__(self, key: bytes, size: int = LIST_ENTRIES) -> None:
        if size < 4 or size & (size - 1):
            raise ValueError("a permutation size is a power of two, at least 4")
        if len(key) < 16:
            raise ValueError("a permutation key has at least 16 bytes")
        self.size = size
        bits = size.bit_length() - 1
        self._half = (bits + 1) // 2
        self._mask = (1 << self._half) - 1
        self._key = key

    def _round(self, number: int, value: int) -> int:
        digest = hmac.new(self._key, f"{number}:{value}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big") & self._mask

    def _feistel(self, value: int) -> int:
        left, right = value >> self._half, value & self._mask
        for number in range(self.ROUNDS):
            left, right = right, left ^ self._round(number, right)
        return (left << self._half) | right

    def position(self, n: int) -> int:
        """The index handed out as the ``n``-th entry of the list."""
        if not 0 <= n < self.size:
            raise ValueError(f"entry {n} is outside a list of {self.size}")
        value = self._feistel(n)
        while value >= self.size:
            value = self._feistel(value)
        return value


@dataclass(frozen=True, slots=True)
class CredentialStatusEntry:
    """Where one credential's status bit lives."""

    purpose: StatusPurpose
    list_url: str
    index: int


def credential_status(entry: CredentialStatusEntry) -> dict[str, Any]:
    """The ``credentialStatus`` object of a credential."""
    return {
        "id": f"{entry.list_url}#{entry.index}",
        "type": STATUS_ENTRY_TYPE,
        "statusPurpose": entry.purpose.value,
        "statusListIndex": str(entry.index),
        "statusListCredential": entry.list_url,
    }


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """One credential whose entry a rendering needs (see :meth:`StatusAllocator.entry`)."""

    credential_id: str
    kind: StatusKind
    subject: str
    live: bool


class StatusAllocator(Protocol):
    """Hands out status entries (the ledger, per tenant and issuer)."""

    async def entries(
        self, tenant: str, requests: Sequence[StatusRequest]
    ) -> list[CredentialStatusEntry | None]:
        """:meth:`entry` of each request, in order (live ones in one ledger transaction)."""
        ...

    async def entry(
        self,
        tenant: str,
        credential_id: str,
        *,
        kind: StatusKind,
        subject: str,
        live: bool,
    ) -> CredentialStatusEntry | None:
        """The entry of ``credential_id`` as it is issued now.

        * live, no entry yet: one is allocated;
        * live, the entry revoked (a reinstated award): a new entry (next generation);
        * not live: the entry is marked revoked (and its list made due for publishing);
          None when the credential never had one (nothing was ever issued with it).
        """
        ...


@dataclass(frozen=True, slots=True)
class StatusWindow:
    """How long a published list is valid, and how often it is re-signed.

    Lists are re-signed at the start of every ``refresh`` period and are valid for
    ``validity`` (two periods by default) from its start, so a verifier never meets an
    expired list while publish runs, and the same bits give the same content within a
    period (no needless re-signing).
    """

    refresh: timedelta = timedelta(hours=1)
    validity: timedelta | None = None

    def __post_init__(self) -> None:
        if self.refresh <= timedelta(0):
            raise ValueError("the refresh period must be positive")
        if self.validity is not None and self.validity < self.refresh:
            raise ValueError("a list must stay valid at least one refresh period")

    @property
    def valid_for(self) -> timedelta:
        """The validity of each signed list."""
        return self.validity if self.validity is not None else 2 * self.refresh

    def period_start(self, now: datetime) -> datetime:
        """The start of the refresh period ``now`` falls in."""
        seconds = self.refresh.total_seconds()
        epoch = now.astimezone(UTC).timestamp()
        return datetime.fromtimestamp(int(epoch // seconds * seconds), UTC)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def status_list_credential(
    *,
    list_url: str,
    issuer: str,
    purpose: StatusPurpose,
    revoked: Iterable[int],
    valid_from: datetime,
    valid_until: datetime,
    ttl: timedelta,
    entries: int = LIST_ENTRIES,
) -> dict[str, Any]:
    """The unsigned ``BitstringStatusListCredential`` of a list with ``revoked`` bits set.

    The issuer is the credentials' own issuer (by id: verifiers resolve its key from
    there); ``ttl`` (milliseconds in the document) tells verifiers how long they may cache it.
    """
    return {
        "@context": [VC_CONTEXT],
        "id": list_url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": _timestamp(valid_from),
        "validUntil": _timestamp(valid_until),
        "credentialSubject": {
            "id": f"{list_url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": purpose.value,
            "encodedList": encode_status_list(bitstring(revoked, entries)),
            "ttl": int(ttl.total_seconds() * 1000),
        },
    }
