"""Bounded caches in front of signing and verification.

Signing is deterministic: Ed25519 signatures (RFC 8032) have no random nonce, so the same
key, document and proof options always give the same proof. A signed credential can
therefore be reused whenever the same key is asked to sign the same content again -- in
particular a nested AchievementCredential inside a learner's ClrCredential, which is
re-signed every time the CLR is re-issued although only one of its awards changed.

Cache key (:func:`signature_cache_key`): sha256 over the verification method, the raw
public key (a verification method URL can be re-keyed; a proof of the old key must not be
served for the new one), the requested ``created`` time if the caller fixed one, and the
canonical JSON (:func:`canonical_json`) of the whole unsigned document. No document field
is left out as "volatile": what publish renders is a function of the catalog only (derived
ids, award dates, ``validFrom`` from the data), and every field is covered by the
signature, so a field left out of the key would be served with its *old* value.

``created``: when the caller lets the time default to "now" (``created=None``), the
request is keyed without a time, and a hit returns the proof made the first time, with its
original ``created``. That proof is as valid as a fresh one (``created`` is when the proof
was made, not when the credential was sent) and verifies unchanged; it is what makes an
unchanged nested credential byte-identical across CLR re-issues. A caller that fixes
``created`` gets exactly that time: it is part of the key.

The verification cache (:class:`VerificationCache`) remembers credentials whose proofs
verified, keyed by the sha256 of their whole canonical JSON (document *and* proof, so the
proofValue is in the key): a changed byte anywhere is a different key and is verified
again. Failures are not cached.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from .contexts import ContextLoader
from .errors import SigningError
from .keys import SigningKey
from .proof import KeyResolver, format_created, sign_credential, verify_credential

__all__ = [
    "DEFAULT_SIGNATURE_CACHE_CHARS",
    "DEFAULT_SIGNATURE_CACHE_SIZE",
    "DEFAULT_VERIFICATION_CACHE_SIZE",
    "CacheStats",
    "SignatureCache",
    "VerificationCache",
    "canonical_json",
    "key_of_canonical",
    "signature_cache_key",
]

#: Signed credentials kept by default (the character bound below usually binds first).
DEFAULT_SIGNATURE_CACHE_SIZE: Final = 20_000
#: Characters of signed JSON kept by default (about as many bytes: the JSON is ASCII-heavy).
DEFAULT_SIGNATURE_CACHE_CHARS: Final = 32 * 2**20
#: Verified credentials remembered by default (64 hex characters each).
DEFAULT_VERIFICATION_CACHE_SIZE: Final = 100_000

# Bumped if the key layout changes, so keys of different layouts can never collide.
_KEY_VERSION: Final = b"cayg-signing/signature-cache/1"


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """One byte string per JSON value: sorted keys, no insignificant whitespace, UTF-8.

    Two documents that are equal as JSON (whatever their key order) give the same bytes.

    Raises:
        SigningError: ``document`` is not a JSON object of JSON values.
    """
    if not isinstance(document, Mapping):
        raise SigningError("document must be a JSON object")
    try:
        text = json.dumps(
            dict(document),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise SigningError(f"document is not plain JSON: {exc}") from exc
    return text.encode("utf-8")


def signature_cache_key(
    document: Mapping[str, Any],
    *,
    verification_method: str,
    public_key: bytes,
    created: datetime | None = None,
) -> str:
    """The :class:`SignatureCache` key of signing ``document`` (see the module docs)."""
    return key_of_canonical(
        canonical_json(document),
        verification_method=verification_method,
        public_key=public_key,
        created=created,
    )


def key_of_canonical(
    canonical: bytes,
    *,
    verification_method: str,
    public_key: bytes,
    created: datetime | None = None,
) -> str:
    """:func:`signature_cache_key` of a document already in :func:`canonical_json` form
    (for callers that need those bytes anyway)."""
    digest = hashlib.sha256(_KEY_VERSION)
    for part in (
        verification_method.encode("utf-8"),
        bytes(public_key),
        format_created(created).encode("ascii") if created is not None else b"",
        canonical,
    ):
        # Length-prefixed, so no two different tuples of parts hash the same bytes.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache's counters (``chars``: characters of stored JSON text)."""

    hits: int
    misses: int
    size: int
    maxsize: int
    chars: int = 0


class _Lru:
    """A thread-safe LRU map of str -> value: at most ``maxsize`` entries (0: keeps none)
    and, when ``max_chars`` is set, at most that many characters of ``str`` values."""

    def __init__(self, maxsize: int, max_chars: int | None = None) -> None:
        if maxsize < 0:
            raise ValueError("cache size must be 0 (off) or positive")
        if max_chars is not None and max_chars < 0:
            raise ValueError("max_chars must be 0 or positive")
        self.maxsize = maxsize
        self.max_chars = max_chars
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: Any) -> None:
        chars = len(value) if isinstance(value, str) else 0
        if self.maxsize == 0 or (self.max_chars is not None and chars > self.max_chars):
            # One value larger than the whole budget would only flush everything else.
            return
        with self._lock:
            previous = self._data.pop(key, None)
            if isinstance(previous, str):
                self._chars -= len(previous)
            self._data[key] = value
            self._chars += chars
            while len(self._data) > self.maxsize or (
                self.max_chars is not None and self._chars > self.max_chars
            ):
                _, dropped = self._data.popitem(last=False)
                if isinstance(dropped, str):
                    self._chars -= len(dropped)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.hits, self.misses, len(self._data), self.maxsize, self._chars)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._chars = 0


class SignatureCache:
    """Signed credentials by :func:`signature_cache_key`, least recently used dropped first.

    Values are kept as canonical JSON text, so a caller that changes a returned document
    cannot change what the cache serves next. Safe to share between threads.
    """

    def __init__(
        self,
        maxsize: int = DEFAULT_SIGNATURE_CACHE_SIZE,
        *,
        max_chars: int | None = DEFAULT_SIGNATURE_CACHE_CHARS,
    ) -> None:
        """Keep at most ``maxsize`` signed documents (0 turns caching off) and at most
        ``max_chars`` characters of their JSON (None: no such bound).

        The character bound is what keeps memory flat: a learner's signed CLR holds all
        their awards, so a count alone says little about bytes.

        Raises:
            ValueError: ``maxsize`` or ``max_chars`` is negative.
        """
        self._lru = _Lru(maxsize, max_chars)

    def get(self, key: str) -> dict[str, Any] | None:
        """The signed document stored under ``key`` (a fresh copy), or None."""
        text = self._lru.get(key)
        if text is None:
            return None
        signed: dict[str, Any] = json.loads(text)
        return signed

    def put(self, key: str, signed: Mapping[str, Any]) -> None:
        """Store ``signed`` (the signed document) under ``key``."""
        self._lru.put(key, canonical_json(signed).decode("utf-8"))

    def put_json(self, key: str, signed_json: str) -> None:
        """Store a signed document given as its :func:`canonical_json` text (no
        re-serialization; the caller vouches for the form)."""
        self._lru.put(key, signed_json)

    def sign(
        self,
        credential: Mapping[str, Any],
        key: SigningKey,
        loader: ContextLoader,
        *,
        created: datetime | None = None,
    ) -> dict[str, Any]:
        """:func:`~cayg_signing.sign_credential` in this thread, served from the cache
        when the same key already signed the same content (see the module docs on
        ``created``)."""
        cache_key = signature_cache_key(
            credential,
            verification_method=key.verification_method,
            public_key=key.public_key,
            created=created,
        )
        cached = self.get(cache_key)
        if cached is not None:
            return cached
        signed = sign_credential(credential, key, loader, created=created)
        # The cache keeps its own (text) copy, so the caller may change ``signed``.
        self.put(cache_key, signed)
        return signed

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and size so far."""
        return self._lru.stats()

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        self._lru.clear()


class VerificationCache:
    """:func:`~cayg_signing.verify_credential` for one loader and trust map, remembering
    credentials that verified so that the same bytes are not verified twice.

    The key is the sha256 of the credential's canonical JSON, proof included; only
    successful verifications are remembered, so a tampered copy of a verified credential
    (a different key) is verified -- and rejected -- like any other. Safe to share between
    threads.
    """

    def __init__(
        self,
        loader: ContextLoader,
        *,
        trusted_keys: Mapping[str, bytes] | None = None,
        maxsize: int = DEFAULT_VERIFICATION_CACHE_SIZE,
        resolver: KeyResolver | None = None,
    ) -> None:
        """Verify with ``loader`` and ``trusted_keys`` (and ``resolver`` for did:web and
        https methods); remember at most ``maxsize`` verified credentials (0 turns caching
        off). A remembered verdict is not re-checked when the issuer's document changes
        later: a key removed from it is noticed by credentials not verified before.

        Raises:
            ValueError: ``maxsize`` is negative.
        """
        self._loader = loader
        # Copied: the cached verdicts hold for this trust map only.
        self._trusted_keys = {method: bytes(key) for method, key in (trusted_keys or {}).items()}
        self._resolver = resolver
        self._lru = _Lru(maxsize)

    def verify(self, credential: Mapping[str, Any]) -> None:
        """Return if the credential's proof holds (now, or when these bytes last verified).

        Raises:
            ProofError: the proof does not verify (never cached).
        """
        try:
            digest = hashlib.sha256(canonical_json(credential)).hexdigest()
        except ValueError:
            # Not JSON: let verify_credential give its usual reason.
            digest = None
        if digest is not None and self._lru.get(digest) is not None:
            return
        verify_credential(
            credential, self._loader, trusted_keys=self._trusted_keys, resolver=self._resolver
        )
        if digest is not None:
            self._lru.put(digest, True)

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and size so far."""
        return self._lru.stats()
