"""Issuer identifiers a verifier can resolve: ``did:key``, ``did:web`` and https URLs.

* ``did:key`` names its own key: nothing to fetch, and nothing ties it to an institution.
* ``did:web:northfield.example`` is the DID document at
  ``https://northfield.example/.well-known/did.json``; ``did:web:host:issuers:cayg`` the one
  at ``https://host/issuers/cayg/did.json`` (a port is written ``host%3A8443``).
* An https issuer id (``https://northfield.example/issuers/cayg``) is a *controller
  document* served at that URL itself (W3C Controlled Identifiers).

Either document lists the issuer's keys (``verificationMethod``: ``Multikey`` with
``publicKeyMultibase``) and which of them may sign credentials (``assertionMethod``).
Several keys may be listed at once, which is how keys are rotated: credentials signed with
the previous key keep verifying while new ones are signed with the next.

A proof's ``verificationMethod`` (``<controller>#<fragment>``) is trusted only when the
controller's document lists it, says it is controlled by that controller, and lists it
under ``assertionMethod``; the credential's issuer must be that controller.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import KeyFormatError, ProofError
from .keys import public_key_from_did_key, public_key_from_multibase

__all__ = [
    "DID_CONTEXT",
    "MULTIKEY_CONTEXT",
    "PublishedKey",
    "ResolvedKey",
    "controller_document",
    "controller_document_url",
    "controller_of",
    "did_web_url",
    "fetch_json",
    "key_in_document",
]

DID_CONTEXT: Final = "https://www.w3.org/ns/did/v1"
CID_CONTEXT: Final = "https://www.w3.org/ns/cid/v1"
MULTIKEY_CONTEXT: Final = "https://w3id.org/security/multikey/v1"
#: The most a fetched controller document or status list may weigh.
MAX_DOCUMENT_BYTES: Final = 2 * 2**20

#: Fetches a JSON document by URL (and raises ``ValueError`` or ``OSError`` on failure).
Fetch = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """One key an issuer lists: its verification method id and ``publicKeyMultibase``."""

    id: str
    public_key_multibase: str


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """What a verification method resolved to: who controls it, and the raw public key."""

    controller: str
    public_key: bytes


def controller_of(verification_method: str) -> str:
    """The controller a verification method id hangs off (the part before ``#``)."""
    return verification_method.partition("#")[0]


def did_web_url(did: str) -> str:
    """The https URL of a ``did:web`` DID document.

    Raises:
        KeyFormatError: not a ``did:web`` DID, or a malformed one.
    """
    if not did.startswith("did:web:"):
        raise KeyFormatError(f"{did!r} is not a did:web DID")
    if "#" in did or "?" in did or "/" in did:
        raise KeyFormatError(f"{did!r}: a did:web DID has no path, query or fragment")
    segments = did.removeprefix("did:web:").split(":")
    if any(not s for s in segments):
        raise KeyFormatError(f"{did!r} has an empty segment")
    host = urllib.parse.unquote(segments[0])
    if not host or any(c in host for c in "/@?#") or host != host.strip():
        raise KeyFormatError(f"{did!r} does not name a host")
    path = [urllib.parse.unquote(s) for s in segments[1:]]
    if any(p in {".", ".."} or "/" in p for p in path):
        raise KeyFormatError(f"{did!r} has a path segment that is not a plain name")
    where = "/".join(path) if path else ".well-known"
    return f"https://{host.lower()}/{where}/did.json"


def controller_document_url(controller: str) -> str:
    """Where the document of a ``did:web`` or https controller is served.

    Raises:
        KeyFormatError: the controller is neither (a ``did:key`` needs no document).
    """
    if controller.startswith("did:web:"):
        return did_web_url(controller)
    parsed = urllib.parse.urlsplit(controller)
    if parsed.scheme == "https" and parsed.netloc and not parsed.fragment:
        return controller
    raise KeyFormatError(
        f"{controller!r} is neither a did:web DID nor an https URL with a controller document"
    )


def controller_document(
    controller: str,
    keys: Sequence[PublishedKey],
    *,
    profile: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The DID document (``did:web``) or controller document (https) listing ``keys``.

    Every key must hang off ``controller`` (``<controller>#<fragment>``); all of them are
    assertion methods. ``profile`` (an https issuer's OB ``Profile``) is merged in, so one
    document at the issuer's URL serves both verifiers and wallets.

    Raises:
        KeyFormatError: no keys, a key of another controller, a duplicate id, a malformed
            key, or a controller that is not did:web or https.
    """
    controller_document_url(controller)  # refuses what no verifier could fetch
    if not keys:
        raise KeyFormatError(f"{controller}: an issuer document lists at least one key")
    methods: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key in keys:
        if controller_of(key.id) != controller or not key.id.partition("#")[2]:
            raise KeyFormatError(f"key {key.id!r} is not <{controller}>#<fragment>")
        if key.id in seen:
            raise KeyFormatError(f"key {key.id!r} is listed twice")
        seen.add(key.id)
        public_key_from_multibase(key.public_key_multibase)
        methods.append(
            {
                "id": key.id,
                "type": "Multikey",
                "controller": controller,
                "publicKeyMultibase": key.public_key_multibase,
            }
        )
    is_did = controller.startswith("did:")
    document: dict[str, Any] = {
        "@context": [DID_CONTEXT if is_did else CID_CONTEXT, MULTIKEY_CONTEXT],
        "id": controller,
    }
    if profile is not None and not is_did:
        extra = {k: v for k, v in profile.items() if k not in {"@context", "id"}}
        document |= extra
    document["verificationMethod"] = methods
    document["assertionMethod"] = [m["id"] for m in methods]
    return document


def _absolute(ref: Any, controller: str) -> str | None:
    if not isinstance(ref, str):
        return None
    return controller + ref if ref.startswith("#") else ref


def key_in_document(document: Any, verification_method: str) -> ResolvedKey:
    """The key ``verification_method`` names in its controller's ``document``.

    Raises:
        ProofError: the document is not the controller's, does not list the method as an
            assertion method, says another controller controls it, or its key is not an
            Ed25519 Multikey.
    """
    controller = controller_of(verification_method)
    if not isinstance(document, Mapping):
        raise ProofError(f"the document of {controller!r} is not a JSON object")
    if document.get("id") != controller:
        raise ProofError(
            f"the document fetched for {controller!r} is the document of {document.get('id')!r}"
        )
    methods = document.get("verificationMethod") or []
    assertion = document.get("assertionMethod") or []
    if not isinstance(methods, list) or not isinstance(assertion, list):
        raise ProofError(f"the document of {controller!r} has malformed key lists")
    embedded = [m for m in assertion if isinstance(m, Mapping)]
    listed = {_absolute(m, controller) for m in assertion if isinstance(m, str)}
    found: Mapping[str, Any] | None = None
    for method in [*methods, *embedded]:
        if isinstance(method, Mapping) and _absolute(method.get("id"), controller) == (
            verification_method
        ):
            found = method
            break
    if found is None:
        raise ProofError(f"{verification_method!r} is not a key listed by {controller!r}")
    if found not in embedded and verification_method not in listed:
        raise ProofError(f"{verification_method!r} is not an assertion method of {controller!r}")
    if found.get("controller") != controller:
        raise ProofError(
            f"{verification_method!r} says it is controlled by {found.get('controller')!r}, "
            f"not {controller!r}"
        )
    multibase = found.get("publicKeyMultibase")
    if found.get("type") not in ("Multikey", "Ed25519VerificationKey2020") or not isinstance(
        multibase, str
    ):
        raise ProofError(f"{verification_method!r} is not an Ed25519 Multikey")
    try:
        return ResolvedKey(controller=controller, public_key=public_key_from_multibase(multibase))
    except KeyFormatError as exc:
        raise ProofError(f"{verification_method!r}: {exc}") from exc


def resolve_key(verification_method: str, fetch: Fetch) -> ResolvedKey:
    """Resolve a ``did:key``, ``did:web`` or https verification method to its key.

    Raises:
        ProofError: the method cannot be resolved (the reason says why).
    """
    controller = controller_of(verification_method)
    if controller.startswith("did:key:"):
        try:
            return ResolvedKey(controller, public_key_from_did_key(verification_method))
        except KeyFormatError as exc:
            raise ProofError(f"verificationMethod {verification_method!r}: {exc}") from exc
    try:
        url = controller_document_url(controller)
    except KeyFormatError as exc:
        raise ProofError(str(exc)) from exc
    try:
        document = fetch(url)
    except (OSError, ValueError) as exc:
        raise ProofError(f"cannot fetch the document of {controller!r} ({url}): {exc}") from exc
    return key_in_document(document, verification_method)


def fetch_json(
    url: str,
    *,
    rewrite: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> Any:
    """GET a JSON document (at most ``max_bytes``), over https only.

    ``rewrite`` maps URL prefixes to others (longest prefix first), e.g.
    ``{"https://northfield.example/": "http://127.0.0.1:18003/northfield.example/"}``: how
    a local stack serves public-looking identifiers from loopback. Only rewritten URLs may
    be plain http.

    Raises:
        ValueError: not https, not JSON, too large; OSError: the fetch failed.
    """
    target = url
    for prefix in sorted(rewrite or {}, key=len, reverse=True):
        if url.startswith(prefix):
            target = (rewrite or {})[prefix] + url[len(prefix) :]
            break
    else:
        if urllib.parse.urlsplit(url).scheme != "https":
            raise ValueError(f"{url} is not an https URL")
    if urllib.parse.urlsplit(target).scheme not in ("https", "http"):
        raise ValueError(f"{target} is not an http(s) URL")
    request = urllib.request.Request(target, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked above
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"{url} is larger than {max_bytes} bytes")
    return json.loads(body)
