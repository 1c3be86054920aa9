"""A verifier as a wallet, an employer or another college runs one: proof, issuer, status.

:class:`CredentialVerifier` checks a credential the way a standards-conforming verifier
does, without trusting anything the credential says about itself:

1. the proof (eddsa-rdfc-2022), with the key resolved from the issuer's identifier —
   ``did:key`` from the DID itself, ``did:web`` and https from the controller document the
   institution hosts (the key must be listed there as an assertion method, and its
   controller must be the credential's issuer);
2. the validity period (``validFrom`` / ``validUntil``);
3. every ``credentialStatus`` of type ``BitstringStatusListEntry``: the status list
   credential is fetched, its own proof verified (by the same issuer), its validity period
   checked, its purpose matched, and the bit at ``statusListIndex`` read;
4. for a ``ClrCredential``, each embedded credential, the same way.

Documents are fetched with a caller-given function (:func:`cayg_signing.did.fetch_json`
by default), so tests and the local stack resolve public-looking identifiers on loopback.
Each :meth:`CredentialVerifier.check` fetches afresh: a verifier must see a revocation as
soon as the list is republished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from .contexts import ContextLoader
from .did import Fetch, ResolvedKey, resolve_key
from .errors import ProofError
from .proof import verify_credential
from .status_list import MIN_STATUS_LIST_ENTRIES, StatusListError, decode_status_list, status_bit

__all__ = ["CredentialVerifier", "StatusResult", "Verdict"]

STATUS_ENTRY_TYPE: Final = "BitstringStatusListEntry"
STATUS_LIST_CREDENTIAL_TYPE: Final = "BitstringStatusListCredential"
STATUS_LIST_TYPE: Final = "BitstringStatusList"
#: Embedded credentials checked at most this deep (a CLR holds AchievementCredentials).
_MAX_DEPTH: Final = 3


@dataclass(frozen=True, slots=True)
class StatusResult:
    """One status entry as read from its list."""

    purpose: str
    list_url: str
    index: int
    #: Whether the bit is set (revoked, suspended…).
    set: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """What checking one credential found."""

    credential_id: str | None
    issuer: str | None
    #: Everything that makes the credential unverifiable (bad proof, unreadable status…).
    problems: tuple[str, ...] = ()
    statuses: tuple[StatusResult, ...] = ()
    #: ``validUntil`` has passed, or ``validFrom`` is still to come.
    expired: bool = False
    embedded: tuple[Verdict, ...] = field(default=())

    def _has(self, purpose: str) -> bool:
        return any(s.set and s.purpose == purpose for s in self.statuses) or any(
            e._has(purpose) for e in self.embedded
        )

    @property
    def revoked(self) -> bool:
        """A revocation bit is set, here or in an embedded credential."""
        return self._has("revocation")

    @property
    def suspended(self) -> bool:
        """A suspension bit is set, here or in an embedded credential."""
        return self._has("suspension")

    @property
    def verified(self) -> bool:
        """Proof, issuer and every status list (also of embedded credentials) check out."""
        return not self.problems and all(e.verified for e in self.embedded)

    @property
    def valid(self) -> bool:
        """Verified, within its validity period, neither revoked nor suspended."""
        return self.verified and not self.expired and not self.revoked and not self.suspended

    @property
    def all_problems(self) -> tuple[str, ...]:
        """Problems of this credential and of its embedded ones."""
        found = list(self.problems)
        for item in self.embedded:
            found.extend(f"{item.credential_id}: {p}" for p in item.all_problems)
        return tuple(found)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _issuer(document: Mapping[str, Any]) -> str | None:
    issuer = document.get("issuer")
    if isinstance(issuer, Mapping):
        issuer = issuer.get("id")
    return issuer if isinstance(issuer, str) else None


def _types(document: Mapping[str, Any]) -> list[Any]:
    value = document.get("type")
    return value if isinstance(value, list) else [value]


class CredentialVerifier:
    """Checks credentials the way an independent verifier would (see the module docs)."""

    def __init__(
        self,
        loader: ContextLoader,
        fetch: Fetch,
        *,
        trusted_keys: Mapping[str, bytes] | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._loader = loader
        self._fetch = fetch
        self._trusted = dict(trusted_keys or {})
        self._clock = clock

    def resolve(self, verification_method: str) -> ResolvedKey:
        """The key of a verification method, from its controller's document."""
        return resolve_key(verification_method, self._fetch)

    def check(self, credential: Mapping[str, Any]) -> Verdict:
        """Check ``credential`` now: proof, validity period, status lists, embedded ones."""
        return self._check(credential, depth=0)

    def _proof_problem(self, document: Mapping[str, Any]) -> str | None:
        try:
            verify_credential(
                document, self._loader, trusted_keys=self._trusted, resolver=self.resolve
            )
        except ProofError as exc:
            return f"proof: {exc}"
        return None

    def _check(self, credential: Mapping[str, Any], *, depth: int) -> Verdict:
        problems: list[str] = []
        issuer = _issuer(credential)
        proof = self._proof_problem(credential)
        if proof is not None:
            problems.append(proof)
        now = self._clock()
        try:
            start, end = _time(credential.get("validFrom")), _time(credential.get("validUntil"))
        except ValueError:
            problems.append("validFrom / validUntil are not date-times")
            start = end = None
        expired = (end is not None and end <= now) or (start is not None and start > now)
        statuses: list[StatusResult] = []
        entries = credential.get("credentialStatus")
        for entry in entries if isinstance(entries, list) else [entries] if entries else []:
            try:
                statuses.append(self._status(entry, issuer, now))
            except (ProofError, StatusListError, ValueError, OSError) as exc:
                problems.append(f"status: {exc}")
        embedded: list[Verdict] = []
        if depth < _MAX_DEPTH:
            subject = credential.get("credentialSubject")
            inner = subject.get("verifiableCredential") if isinstance(subject, Mapping) else None
            for item in inner if isinstance(inner, list) else [inner] if inner else []:
                if isinstance(item, Mapping):
                    embedded.append(self._check(item, depth=depth + 1))
                else:
                    problems.append("an embedded credential is not a JSON object")
        credential_id = credential.get("id")
        return Verdict(
            credential_id=credential_id if isinstance(credential_id, str) else None,
            issuer=issuer,
            problems=tuple(problems),
            statuses=tuple(statuses),
            expired=expired,
            embedded=tuple(embedded),
        )

    def _status(self, entry: Any, issuer: str | None, now: datetime) -> StatusResult:
        if not isinstance(entry, Mapping) or entry.get("type") != STATUS_ENTRY_TYPE:
            raise ValueError(f"unsupported credentialStatus (need {STATUS_ENTRY_TYPE})")
        purpose = entry.get("statusPurpose")
        url = entry.get("statusListCredential")
        raw_index = entry.get("statusListIndex")
        if not isinstance(purpose, str) or not isinstance(url, str):
            raise ValueError("statusPurpose and statusListCredential must be strings")
        if not isinstance(raw_index, str) or not raw_index.isdigit():
            raise ValueError("statusListIndex must be a string of decimal digits")
        index = int(raw_index)
        listed = self._fetch(url)
        if not isinstance(listed, Mapping):
            raise ValueError(f"{url} is not a JSON object")
        if STATUS_LIST_CREDENTIAL_TYPE not in _types(listed):
            raise ValueError(f"{url} is not a {STATUS_LIST_CREDENTIAL_TYPE}")
        if listed.get("id") != url:
            raise ValueError(f"{url} holds the status list {listed.get('id')!r}")
        problem = self._proof_problem(listed)
        if problem is not None:
            raise ValueError(f"the status list {url}: {problem}")
        if _issuer(listed) != issuer:
            raise ValueError(
                f"the status list {url} is issued by {_issuer(listed)!r}, "
                "not by the credential's issuer"
            )
        start, end = _time(listed.get("validFrom")), _time(listed.get("validUntil"))
        if (start is not None and start > now) or (end is not None and end <= now):
            raise ValueError(f"the status list {url} is not valid now (until {end})")
        subject = listed.get("credentialSubject")
        if not isinstance(subject, Mapping) or STATUS_LIST_TYPE not in _types(subject):
            raise ValueError(f"{url} holds no {STATUS_LIST_TYPE}")
        purposes = subject.get("statusPurpose")
        if purpose not in (purposes if isinstance(purposes, list) else [purposes]):
            raise ValueError(f"{url} is a list for {purposes!r}, not {purpose!r}")
        bits = decode_status_list(str(subject.get("encodedList")))
        if len(bits) * 8 < MIN_STATUS_LIST_ENTRIES:
            raise ValueError(f"{url} holds fewer than {MIN_STATUS_LIST_ENTRIES} entries")
        return StatusResult(purpose, url, index, status_bit(bits, index))
