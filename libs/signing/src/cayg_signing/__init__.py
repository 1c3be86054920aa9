"""Sign and verify Open Badges 3.0 / CLR 2.0 credentials (DataIntegrityProof, eddsa-rdfc-2022).

Typical use::

    loader = ContextLoader.from_directory(settings.contexts_dir)
    key = SigningKey.from_file(settings.signing_key_file)
    signed = sign_credential(credential, key, loader)
    verify_credential(signed, loader, trusted_keys={key.verification_method: key.public_key})

JSON-LD contexts are read only from the given directory and must match the sha256 pins
in :data:`PINNED_CONTEXTS`; nothing is fetched from the network. Documents using terms
the contexts do not define are refused (:class:`UndefinedTermError` when signing,
:class:`ProofError` when verifying), because that data would not be covered by the proof.

For services: :class:`SigningPool` signs in worker processes behind a
:class:`SignatureCache` (``await pool.sign(credential, key)``); :class:`VerificationCache`
verifies each distinct credential once. See :mod:`cayg_signing.cache` for what a cached
proof's ``created`` means.
"""

from __future__ import annotations

from .cache import (
    DEFAULT_SIGNATURE_CACHE_CHARS,
    DEFAULT_SIGNATURE_CACHE_SIZE,
    DEFAULT_VERIFICATION_CACHE_SIZE,
    CacheStats,
    SignatureCache,
    VerificationCache,
    canonical_json,
    signature_cache_key,
)
from .canon import canonicalize
from .contexts import PINNED_CONTEXTS, ContextLoader, PinnedContext
from .did import (
    PublishedKey,
    ResolvedKey,
    controller_document,
    controller_document_url,
    controller_of,
    did_web_url,
    fetch_json,
    key_in_document,
    resolve_key,
)
from .errors import ContextError, KeyFormatError, ProofError, SigningError, UndefinedTermError
from .keys import (
    SigningKey,
    decode_multibase,
    did_key,
    encode_multibase,
    public_key_from_did_key,
    public_key_from_multibase,
)
from .pool import SigningPool
from .proof import (
    CRYPTOSUITE,
    PROOF_PURPOSE,
    PROOF_TYPE,
    KeyResolver,
    format_created,
    hash_data,
    sign_credential,
    verify_credential,
)
from .status_list import (
    MIN_STATUS_LIST_ENTRIES,
    StatusListError,
    bitstring,
    decode_status_list,
    encode_status_list,
    status_bit,
)
from .verifier import CredentialVerifier, StatusResult, Verdict

__all__ = [
    "CRYPTOSUITE",
    "DEFAULT_SIGNATURE_CACHE_CHARS",
    "DEFAULT_SIGNATURE_CACHE_SIZE",
    "DEFAULT_VERIFICATION_CACHE_SIZE",
    "MIN_STATUS_LIST_ENTRIES",
    "PINNED_CONTEXTS",
    "PROOF_PURPOSE",
    "PROOF_TYPE",
    "CacheStats",
    "ContextError",
    "ContextLoader",
    "CredentialVerifier",
    "KeyFormatError",
    "KeyResolver",
    "PinnedContext",
    "ProofError",
    "PublishedKey",
    "ResolvedKey",
    "SignatureCache",
    "SigningError",
    "SigningKey",
    "SigningPool",
    "StatusListError",
    "StatusResult",
    "UndefinedTermError",
    "Verdict",
    "VerificationCache",
    "bitstring",
    "canonical_json",
    "canonicalize",
    "controller_document",
    "controller_document_url",
    "controller_of",
    "decode_multibase",
    "decode_status_list",
    "did_key",
    "did_web_url",
    "encode_multibase",
    "encode_status_list",
    "fetch_json",
    "format_created",
    "hash_data",
    "key_in_document",
    "public_key_from_did_key",
    "public_key_from_multibase",
    "resolve_key",
    "sign_credential",
    "signature_cache_key",
    "status_bit",
    "verify_credential",
]
