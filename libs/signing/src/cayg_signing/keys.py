"""Ed25519 signing keys in Multikey form, and ``did:key`` identifiers.

Key file format (JSON object, UTF-8)::

    {
      "publicKeyMultibase": "z6Mk...",
      "secretKeyMultibase": "z3u2...",
      "verificationMethod": "https://example.edu/issuers/1#key-1"
    }

* ``publicKeyMultibase``: ``"z"`` + base58btc(0xed 0x01 + 32-byte public key).
* ``secretKeyMultibase``: ``"z"`` + base58btc(0x80 0x26 + 32-byte seed). The 64-byte
  form (seed followed by the public key), which the 1EdTech test vectors use, is also
  read; its public half must match.
* ``verificationMethod`` (optional): the id written into proofs. Without it the key's
  ``did:key`` (``did:key:z6Mk...#z6Mk...``) is used.

No other members are accepted, so a misspelt ``verificationMethod`` cannot silently
turn into a ``did:key``. The file holds a secret: :meth:`SigningKey.write` creates it
readable by its owner only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import KeyFormatError

__all__ = [
    "SigningKey",
    "decode_multibase",
    "did_key",
    "encode_multibase",
    "public_key_from_did_key",
    "public_key_from_multibase",
]

_ED25519_PUB_PREFIX: Final = b"\xed\x01"  # multicodec ed25519-pub, as unsigned varint
_ED25519_PRIV_PREFIX: Final = b"\x80\x26"  # multicodec ed25519-priv, as unsigned varint
_KEY_SIZE: Final = 32
_DID_KEY: Final = "did:key:"
_KEY_FILE_MEMBERS: Final = frozenset(
    {"publicKeyMultibase", "secretKeyMultibase", "verificationMethod"}
)


def encode_multibase(data: bytes) -> str:
    """Multibase base58btc: ``"z"`` + base58 (Bitcoin alphabet) of ``data``."""
    return "z" + base58.b58encode(data).decode("ascii")


def decode_multibase(value: str) -> bytes:
    """Decode a base58btc multibase string.

    Only the canonical spelling is accepted (the ``base58`` library ignores trailing
    whitespace, for instance), so a value has exactly one valid encoding.

    Raises:
        KeyFormatError: not a ``"z"``-prefixed, canonical base58btc string.
    """
    if not isinstance(value, str) or not value.startswith("z") or len(value) < 2:
        raise KeyFormatError(f"{value!r} is not a base58btc multibase value ('z' prefix)")
    try:
        data = base58.b58decode(value[1:])
    except ValueError as exc:
        raise KeyFormatError(f"{value!r} is not valid base58btc: {exc}") from exc
    if encode_multibase(data) != value:
        raise KeyFormatError(f"{value!r} is not canonical base58btc")
    return data


def _public_multikey(public_key: bytes) -> str:
    return encode_multibase(_ED25519_PUB_PREFIX + public_key)


def public_key_from_multibase(value: str) -> bytes:
    """The raw 32-byte Ed25519 public key of a ``publicKeyMultibase`` (``z6Mk...``).

    Raises:
        KeyFormatError: not an Ed25519 Multikey public key.
    """
    data = decode_multibase(value)
    if not data.startswith(_ED25519_PUB_PREFIX) or len(data) != 2 + _KEY_SIZE:
        raise KeyFormatError(f"{value!r} is not an Ed25519 public key multibase (0xed01)")
    return data[2:]


def did_key(public_key: bytes) -> str:
    """The ``did:key`` verification method id ``did:key:z6Mk...#z6Mk...`` of a public key.

    Raises:
        KeyFormatError: ``public_key`` is not 32 bytes.
    """
    if len(public_key) != _KEY_SIZE:
        raise KeyFormatError("an Ed25519 public key is 32 bytes")
    multikey = _public_multikey(bytes(public_key))
    return f"{_DID_KEY}{multikey}#{multikey}"


def public_key_from_did_key(verification_method: str) -> bytes:
    """The Ed25519 public key named by a ``did:key:z6Mk...#z6Mk...`` verification method.

    The fragment must repeat the method-specific id, as the did:key method defines; any
    other fragment names no key of that DID.

    Raises:
        KeyFormatError: not an Ed25519 ``did:key`` verification method, or the fragment does
            not match the DID.
    """
    if not verification_method.startswith(_DID_KEY):
        raise KeyFormatError(f"{verification_method!r} is not a did:key")
    did, sep, fragment = verification_method.partition("#")
    identifier = did[len(_DID_KEY) :]
    if not sep:
        raise KeyFormatError(f"{verification_method!r} has no '#' fragment naming the key")
    if fragment != identifier:
        raise KeyFormatError(
            f"did:key fragment {fragment!r} does not match the DID's key {identifier!r}"
        )
    return public_key_from_multibase(identifier)


def _secret_seed_from_multibase(value: str) -> tuple[bytes, bytes | None]:
    """(32-byte seed, public key embedded in the 64-byte form or None)."""
    data = decode_multibase(value)
    if not data.startswith(_ED25519_PRIV_PREFIX):
        raise KeyFormatError("secretKeyMultibase is not an Ed25519 secret key (0x8026)")
    body = data[2:]
    if len(body) == _KEY_SIZE:
        return body, None
    if len(body) == 2 * _KEY_SIZE:
        return body[:_KEY_SIZE], body[_KEY_SIZE:]
    raise KeyFormatError("secretKeyMultibase must hold a 32-byte seed (or seed + public key)")


class SigningKey:
    """An Ed25519 private key and the verification method id proofs will name.

    The verification method is either the key's own ``did:key`` (the default) or an
    https URL whose public key verifiers know through their trust configuration.
    """

    __slots__ = ("_private", "_public", "_verification_method")

    def __init__(
        self, private_key: Ed25519PrivateKey, verification_method: str | None = None
    ) -> None:
        """Wrap ``private_key``; ``verification_method`` defaults to its ``did:key``.

        Raises:
            KeyFormatError: ``verification_method`` is empty, or is a ``did:key`` that
                names a different key.
        """
        self._private = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if verification_method is None:
            verification_method = did_key(self._public)
        if not isinstance(verification_method, str) or not verification_method.strip():
            raise KeyFormatError("verificationMethod must be a non-empty string")
        if (
            verification_method.startswith(_DID_KEY)
            and public_key_from_did_key(verification_method) != self._public
        ):
            raise KeyFormatError(
                f"verificationMethod {verification_method!r} is the did:key of a "
                "different public key"
            )
        self._verification_method = verification_method

    @classmethod
    def generate(cls, verification_method: str | None = None) -> SigningKey:
        """A new random key; ``verification_method`` defaults to its ``did:key``."""
        return cls(Ed25519PrivateKey.generate(), verification_method)

    @classmethod
    def from_seed(cls, seed: bytes, verification_method: str | None = None) -> SigningKey:
        """The key for a raw 32-byte Ed25519 seed (RFC 8032 private key).

        Raises:
            KeyFormatError: ``seed`` is not 32 bytes.
        """
        if len(seed) != _KEY_SIZE:
            raise KeyFormatError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)), verification_method)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SigningKey:
        """Read the key-file object (see the module docs for the format).

        Raises:
            KeyFormatError: unknown or missing members, malformed values, or public and
                secret key that do not belong together.
        """
        if not isinstance(data, Mapping):
            raise KeyFormatError("a key file must hold a JSON object")
        unknown = set(data) - _KEY_FILE_MEMBERS
        if unknown:
            raise KeyFormatError(f"unknown key file members: {', '.join(sorted(unknown))}")
        public_mb = data.get("publicKeyMultibase")
        secret_mb = data.get("secretKeyMultibase")
        if not isinstance(public_mb, str) or not isinstance(secret_mb, str):
            raise KeyFormatError(
                "a key file needs string members publicKeyMultibase and secretKeyMultibase"
            )
        verification_method = data.get("verificationMethod")
        if verification_method is not None and not isinstance(verification_method, str):
            raise KeyFormatError("verificationMethod must be a string")
        seed, embedded_public = _secret_seed_from_multibase(secret_mb)
        key = cls.from_seed(seed, verification_method)
        declared_public = public_key_from_multibase(public_mb)
        if key._public != declared_public or (
            embedded_public is not None and embedded_public != declared_public
        ):
            raise KeyFormatError("publicKeyMultibase does not belong to secretKeyMultibase")
        return key

    @classmethod
    def from_file(cls, path: Path) -> SigningKey:
        """Read a JSON key file (see the module docs for the format).

        Raises:
            KeyFormatError: the file cannot be read or is not a valid key file.
        """
        try:
            data = json.loads(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFormatError(f"cannot read key file {path}: {exc}") from exc
        return cls.from_json(data)

    def to_json(self) -> dict[str, str]:
        """The key-file object, including the secret key (32-byte seed form)."""
        return {
            "publicKeyMultibase": self.public_key_multibase,
            "secretKeyMultibase": encode_multibase(_ED25519_PRIV_PREFIX + self._seed()),
            "verificationMethod": self._verification_method,
        }

    def write(self, path: Path) -> None:
        """Write the key file, creating it with mode 0600; an existing file is not replaced.

        Raises:
            FileExistsError: ``path`` already exists.
        """
        text = json.dumps(self.to_json(), indent=2) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def verification_method(self) -> str:
        """The id written into ``proof.verificationMethod``."""
        return self._verification_method

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key (the value a trust map holds)."""
        return self._public

    @property
    def public_key_multibase(self) -> str:
        """The Multikey ``publicKeyMultibase`` (``z6Mk...``)."""
        return _public_multikey(self._public)

    @property
    def did_key(self) -> str:
        """This key's ``did:key:z6Mk...#z6Mk...`` verification method id."""
        return did_key(self._public)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        # Never include the secret: keys end up in logs through reprs of their holders.
        return f"SigningKey(verification_method={self._verification_method!r})"


def verify_ed25519(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
