"""DataIntegrityProof with cryptosuite eddsa-rdfc-2022, as 1EdTech OB 3.0 / CLR 2.0 use it.

Signing (W3C vc-di-eddsa, "eddsa-rdfc-2022"; 1EdTech OB 3.0 section 8.3):

1. proof options = type, created, verificationMethod, cryptosuite, proofPurpose, plus the
   document's ``@context``;
2. canonicalize the proof options and the document without ``proof`` (RDFC-1.0);
3. data = sha256(canonical proof options) || sha256(canonical document);
4. proofValue = ``"z"`` + base58btc(Ed25519 signature of data).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from .canon import as_json_object, canonicalize
from .contexts import ContextLoader
from .did import ResolvedKey
from .errors import KeyFormatError, ProofError, SigningError
from .keys import (
    SigningKey,
    decode_multibase,
    encode_multibase,
    public_key_from_did_key,
    verify_ed25519,
)

__all__ = [
    "CRYPTOSUITE",
    "PROOF_PURPOSE",
    "PROOF_TYPE",
    "KeyResolver",
    "format_created",
    "hash_data",
    "sign_credential",
    "sign_parsed",
    "verify_credential",
]

PROOF_TYPE: Final = "DataIntegrityProof"
CRYPTOSUITE: Final = "eddsa-rdfc-2022"
#: Issuers sign credentials to assert them; this is the only purpose we create or accept.
PROOF_PURPOSE: Final = "assertionMethod"

#: Resolves a ``did:web`` or https verification method (see :func:`cayg_signing.did.resolve_key`).
KeyResolver = Callable[[str], ResolvedKey]

_SIGNATURE_SIZE: Final = 64
_PUBLIC_KEY_SIZE: Final = 32


def hash_data(proof_options_nquads: str, document_nquads: str) -> bytes:
    """The 64 bytes that are signed: sha256(proof options) followed by sha256(document)."""
    return (
        hashlib.sha256(proof_options_nquads.encode("utf-8")).digest()
        + hashlib.sha256(document_nquads.encode("utf-8")).digest()
    )


def format_created(created: datetime | None) -> str:
    """``created`` as a proof writes it: UTC, ``Z``, seconds (microseconds if any); now
    (to the second) for None.

    Raises:
        SigningError: ``created`` is a naive datetime.
    """
    if created is None:
        created = datetime.now(UTC).replace(microsecond=0)
    if created.tzinfo is None or created.utcoffset() is None:
        # A naive time would be read as local time by some and UTC by others.
        raise SigningError("created must be timezone-aware")
    utc = created.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def sign_credential(
    credential: Mapping[str, Any],
    key: SigningKey,
    loader: ContextLoader,
    *,
    created: datetime | None = None,
) -> dict[str, Any]:
    """Return a copy of ``credential`` with an eddsa-rdfc-2022 ``DataIntegrityProof`` added.

    Only the given document is signed; credentials embedded in it (as in a CLR) must
    already carry their own proofs, which the outer proof then covers.

    Args:
        credential: the unsigned credential (JSON object with ``@context``, no ``proof``).
        key: signing key; its ``verification_method`` goes into the proof.
        loader: the pinned contexts used for canonicalization.
        created: proof creation time (timezone-aware); now, to the second, by default.

    Raises:
        UndefinedTermError: the credential uses terms the contexts do not define.
        SigningError: the credential cannot be canonicalized or already has a proof.
    """
    return sign_parsed(as_json_object(credential, "credential"), key, loader, created=created)


def sign_parsed(
    document: dict[str, Any],
    key: SigningKey,
    loader: ContextLoader,
    *,
    created: datetime | None = None,
) -> dict[str, Any]:
    """:func:`sign_credential` of a document the caller has just parsed from JSON text and
    holds alone (a signing worker's task): it is not copied again before signing. The
    result shares ``document``'s values.

    Raises:
        UndefinedTermError: the credential uses terms the contexts do not define.
        SigningError: the credential cannot be canonicalized or already has a proof.
    """
    if "proof" in document:
        # Replacing or adding to an existing proof is a decision for the caller.
        raise SigningError("credential already has a proof; remove it to sign again")
    if "@context" not in document:
        raise SigningError("credential has no @context")
    options: dict[str, Any] = {
        "type": PROOF_TYPE,
        "created": format_created(created),
        "verificationMethod": key.verification_method,
        "cryptosuite": CRYPTOSUITE,
        "proofPurpose": PROOF_PURPOSE,
    }
    proof_nquads = _options_nquads({"@context": document["@context"], **options}, loader)
    document_nquads = canonicalize(document, loader)
    signature = key.sign(hash_data(proof_nquads, document_nquads))
    return {**document, "proof": {**options, "proofValue": encode_multibase(signature)}}


def verify_credential(
    credential: Mapping[str, Any],
    loader: ContextLoader,
    *,
    trusted_keys: Mapping[str, bytes] | None = None,
    resolver: KeyResolver | None = None,
) -> None:
    """Check the credential's eddsa-rdfc-2022 ``DataIntegrityProof``; return if it holds.

    The public key comes from:

    * ``trusted_keys[verificationMethod]`` (raw 32-byte Ed25519 keys) when listed there;
      for a ``did:key`` it must also be the key the DID names;
    * otherwise, for a ``did:key`` method, the DID itself. A did:key proves only that
      the holder of that key signed, so the credential's issuer must then be that DID;
    * any other (``did:web``, https) method is resolved by ``resolver`` (its controller's
      document must list it as an assertion method, and the controller must be the
      credential's issuer), or must be in ``trusted_keys``.

    Every proof in a proof set must verify. Embedded credentials (in a CLR) are covered
    by the outer proof only as data; verify them separately to check their own proofs.

    Raises:
        ProofError: with the reason, on any failure, including data in the credential
            that the contexts do not define (it would not be covered by the proof).
    """
    try:
        document = as_json_object(credential, "credential")
    except SigningError as exc:
        raise ProofError(str(exc)) from exc
    proofs = document.pop("proof", None)
    if proofs is None:
        raise ProofError("credential has no proof")
    if "@context" not in document:
        raise ProofError("credential has no @context")
    if isinstance(proofs, dict):
        proofs = [proofs]
    if not isinstance(proofs, list) or not proofs:
        raise ProofError("proof must be an object or a non-empty list of objects")

    try:
        document_nquads = canonicalize(document, loader)
    except SigningError as exc:
        raise ProofError(f"cannot canonicalize credential: {exc}") from exc

    for proof in proofs:
        if not isinstance(proof, dict):
            raise ProofError("proof must be a JSON object")
        _verify_one(proof, document, document_nquads, loader, trusted_keys or {}, resolver)


def _verify_one(  # noqa: PLR0917 - a private step of verify_credential
    proof: dict[str, Any],
    document: dict[str, Any],
    document_nquads: str,
    loader: ContextLoader,
    trusted_keys: Mapping[str, bytes],
    resolver: KeyResolver | None,
) -> None:
    if proof.get("type") != PROOF_TYPE:
        raise ProofError(f"unsupported proof type {proof.get('type')!r}; need {PROOF_TYPE!r}")
    if proof.get("cryptosuite") != CRYPTOSUITE:
        raise ProofError(
            f"unsupported cryptosuite {proof.get('cryptosuite')!r}; need {CRYPTOSUITE!r}"
        )
    if proof.get("proofPurpose") != PROOF_PURPOSE:
        raise ProofError(
            f"proofPurpose is {proof.get('proofPurpose')!r}; a credential needs {PROOF_PURPOSE!r}"
        )
    if "previousProof" in proof:
        raise ProofError("proof chains (previousProof) are not supported")

    proof_value = proof.get("proofValue")
    if not isinstance(proof_value, str):
        raise ProofError("proofValue is missing or not a string")
    try:
        signature = decode_multibase(proof_value)
    except KeyFormatError as exc:
        raise ProofError(f"proofValue: {exc}") from exc
    if len(signature) != _SIGNATURE_SIZE:
        raise ProofError(f"proofValue holds {len(signature)} bytes, an Ed25519 signature 64")

    method = proof.get("verificationMethod")
    if not isinstance(method, str) or not method:
        raise ProofError("verificationMethod is missing or not a string")
    public_key = _public_key_for(method, document, trusted_keys, resolver)

    options = {k: v for k, v in proof.items() if k != "proofValue"}
    if "@context" in options:
        # vc-di-eddsa: a proof's own @context must be a prefix of the document's.
        if not _context_is_prefix(options["@context"], document["@context"]):
            raise ProofError("proof @context does not match the start of the credential's")
    else:
        options["@context"] = document["@context"]
    try:
        proof_nquads = _options_nquads(options, loader)
    except SigningError as exc:
        raise ProofError(f"cannot canonicalize proof options: {exc}") from exc

    if not verify_ed25519(public_key, signature, hash_data(proof_nquads, document_nquads)):
        raise ProofError(
            f"signature does not verify with the key of {method!r}: "
            "the credential or its proof was changed, or another key signed it"
        )


#: Canonical proof options kept per loader: the options differ only in ``created`` (to the
#: second) and the verification method, so a busy signer or verifier repeats them.
_OPTIONS_CACHE_SIZE: Final = 1024


def _options_nquads(options: dict[str, Any], loader: ContextLoader) -> str:
    """:func:`canonicalize` of a proof's options, remembered by their JSON."""
    key = json.dumps(options, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    cache = loader._options_nquads
    found = cache.get(key)
    if found is None:
        found = canonicalize(options, loader)
        if len(cache) >= _OPTIONS_CACHE_SIZE:
            cache.clear()
        cache[key] = found
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _context_is_prefix(proof_context: Any, document_context: Any) -> bool:
    prefix, full = _as_list(proof_context), _as_list(document_context)
    return len(prefix) <= len(full) and full[: len(prefix)] == prefix


def _issuer_id(document: Mapping[str, Any]) -> str | None:
    issuer = document.get("issuer")
    if isinstance(issuer, str):
        return issuer
    if isinstance(issuer, Mapping) and isinstance(issuer.get("id"), str):
        return str(issuer["id"])
    return None


def _public_key_for(
    method: str,
    document: Mapping[str, Any],
    trusted_keys: Mapping[str, bytes],
    resolver: KeyResolver | None = None,
) -> bytes:
    is_did_key = method.startswith("did:key:")
    derived: bytes | None = None
    if is_did_key:
        try:
            derived = public_key_from_did_key(method)
        except KeyFormatError as exc:
            raise ProofError(f"verificationMethod {method!r}: {exc}") from exc

    trusted = trusted_keys.get(method)
    if trusted is not None:
        trusted = bytes(trusted)
        if len(trusted) != _PUBLIC_KEY_SIZE:
            raise ProofError(f"trusted key for {method!r} is not a 32-byte Ed25519 public key")
        if derived is not None and derived != trusted:
            raise ProofError(f"trusted key for {method!r} is not the key that did:key names")
        return trusted

    if derived is not None:
        did = method.partition("#")[0]
        issuer = _issuer_id(document)
        if issuer != did:
            raise ProofError(
                f"verificationMethod {method!r} is a did:key not controlled by the issuer "
                f"{issuer!r}; list it in trusted_keys to accept it"
            )
        return derived

    if resolver is not None:
        resolved = resolver(method)
        issuer = _issuer_id(document)
        if resolved.controller != issuer:
            raise ProofError(
                f"verificationMethod {method!r} is controlled by {resolved.controller!r}, "
                f"not by the issuer {issuer!r}"
            )
        return resolved.public_key

    raise ProofError(f"verificationMethod {method!r} is not a trusted key")
