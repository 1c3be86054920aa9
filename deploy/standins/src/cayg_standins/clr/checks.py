"""What the CLR host checks on every upserted credential: 1EdTech schema, then proof."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs
from jsonschema import Draft201909Validator

from cayg_signing import ProofError, VerificationCache
from cayg_standins.conformance import load_json

__all__ = ["ApiSpec", "CredentialChecks", "SchemaCheck", "parse_datetime"]

Api = Literal["clr", "ob"]


@dataclass(frozen=True)
class ApiSpec:
    """The fixed facts of one of the two APIs the host serves."""

    api: Api
    base_path: str
    scope_base: str
    credential_schema: str
    profile_schema: str
    list_schema: str
    title: str

    def scope(self, name: str) -> str:
        """``credential.upsert`` -> the full scope URL of this API."""
        return f"{self.scope_base}/{name}"

    @property
    def scopes(self) -> tuple[str, ...]:
        """Every scope of this API."""
        return tuple(
            self.scope(name)
            for name in (
                "credential.readonly",
                "credential.upsert",
                "profile.readonly",
                "profile.update",
            )
        )


CLR = ApiSpec(
    "clr",
    "/ims/clr/v2p0",
    "https://purl.imsglobal.org/spec/clr/v2p0/scope",
    "clr_v2p0_clrcredential_schema.json",
    "clr_v2p0_profile_schema.json",
    "clr_v2p0_getclrcredentialsresponse_schema.json",
    "Comprehensive Learner Record 2.0 (cayg stand-in)",
)
OB = ApiSpec(
    "ob",
    "/ims/ob/v3p0",
    "https://purl.imsglobal.org/spec/ob/v3p0/scope",
    "ob_v3p0_achievementcredential_schema.json",
    "ob_v3p0_profile_schema.json",
    "ob_v3p0_getopenbadgecredentialsresponse_schema.json",
    "Open Badges 3.0 (cayg stand-in)",
)


def parse_datetime(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 date-time; without an offset it is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: Embedded credentials whose schema check passed, remembered by content (each entry is
#: a 32-byte digest; the oldest are dropped beyond this).
EMBEDDED_CACHE_SIZE = 100_000


class SchemaCheck:
    """One 1EdTech JSON Schema (Draft 2019-09), loaded from the conformance directory.

    A CLR's schema checks each embedded credential against its ``VerifiableCredential``
    definition. A learner's record is re-issued with the same embedded credentials again
    and again, so those are checked on their own, once per distinct content, and the record
    against the schema with that definition reduced to "an object" (the ``oneOf`` between
    one credential and a list of them still decides). The errors are the same; an embedded
    credential's are reported under its path.

    Each check first asks a compiled validator (jsonschema-rs, formats checked) whether the
    document is valid at all; only a document it does not pass is checked again with
    ``jsonschema``, whose messages are the ones reported. A stricter fast answer therefore
    costs time, never a wrong refusal; the fast path keeps a bulk upload of new
    credentials from measuring this stand-in's schema checks instead of cayg-sync.
    """

    def __init__(self, path: Path) -> None:
        """Load and check the schema itself."""
        schema = load_json(path)
        Draft201909Validator.check_schema(schema)
        self.name = path.name
        checker = Draft201909Validator.FORMAT_CHECKER
        defs = schema.get("$defs") if isinstance(schema, dict) else None
        self._embedded: Draft201909Validator | None = None
        if isinstance(defs, dict) and isinstance(defs.get("VerifiableCredential"), dict):
            outer = {**schema, "$defs": {**defs, "VerifiableCredential": {"type": "object"}}}
            self._validator = Draft201909Validator(outer, format_checker=checker)
            self._fast = _compiled(outer)
            embedded = {key: value for key, value in schema.items() if key in ("$schema", "$defs")}
            embedded["$ref"] = "#/$defs/VerifiableCredential"
            self._embedded = Draft201909Validator(embedded, format_checker=checker)
            self._fast_embedded: jsonschema_rs.Draft201909Validator | None = _compiled(embedded)
        else:
            self._validator = Draft201909Validator(schema, format_checker=checker)
            self._fast = _compiled(schema)
            self._fast_embedded = None
        self._valid_embedded: dict[bytes, None] = {}

    def errors(self, instance: Any, limit: int = 8) -> list[str]:
        """Readable errors (``/json/pointer: message``), the first ``limit`` of them."""
        if self._fast.is_valid(instance) and self._embedded_valid(instance):
            return []
        found = [
            ("/" + "/".join(str(part) for part in error.absolute_path), error.message)
            for error in sorted(self._validator.iter_errors(instance), key=lambda e: list(e.path))
        ]
        found.extend(self._embedded_errors(instance))
        out = [f"{pointer}: {_short(message)}" for pointer, message in found[:limit]]
        if len(found) > limit:
            out.append(f"... and {len(found) - limit} more")
        return out

    def _embedded_valid(self, instance: Any) -> bool:
        """Whether every embedded credential passes the compiled check (remembered)."""
        if self._fast_embedded is None or not isinstance(instance, Mapping):
            return True
        for _, item in self._embedded_items(instance):
            if not isinstance(item, Mapping):
                continue
            digest = _digest(item)
            if digest in self._valid_embedded:
                continue
            if not self._fast_embedded.is_valid(item):
                return False
            self._remember_valid(digest)
        return True

    def _remember_valid(self, digest: bytes) -> None:
        if len(self._valid_embedded) >= EMBEDDED_CACHE_SIZE:
            del self._valid_embedded[next(iter(self._valid_embedded))]
        self._valid_embedded[digest] = None

    @staticmethod
    def _embedded_items(instance: Mapping[str, Any]) -> list[tuple[str, Any]]:
        subject = instance.get("credentialSubject")
        embedded = subject.get("verifiableCredential") if isinstance(subject, Mapping) else None
        if isinstance(embedded, list):
            return [
                (f"/credentialSubject/verifiableCredential/{i}", e) for i, e in enumerate(embedded)
            ]
        if isinstance(embedded, Mapping):
            return [("/credentialSubject/verifiableCredential", embedded)]
        return []

    def _embedded_errors(self, instance: Any) -> list[tuple[str, str]]:
        if self._embedded is None or not isinstance(instance, Mapping):
            return []
        found: list[tuple[str, str]] = []
        for base, item in self._embedded_items(instance):
            if not isinstance(item, Mapping):
                continue  # the outer schema's "an object" reports it
            digest = _digest(item)
            if digest in self._valid_embedded:
                continue
            errors = sorted(self._embedded.iter_errors(item), key=lambda e: list(e.path))
            if not errors:
                self._remember_valid(digest)
            for error in errors:
                pointer = "/".join(str(part) for part in error.absolute_path)
                found.append((f"{base}/{pointer}".rstrip("/"), error.message))
        return found


def _compiled(schema: Any) -> jsonschema_rs.Draft201909Validator:
    return jsonschema_rs.Draft201909Validator(schema, validate_formats=True)


def _digest(item: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(item, sort_keys=True, ensure_ascii=False).encode()).digest()


def _short(message: str, width: int = 300) -> str:
    return message if len(message) <= width else message[: width - 3] + "..."


class CredentialChecks:
    """Schema + proof checks for one API."""

    def __init__(self, spec: ApiSpec, schemas_dir: Path, proofs: VerificationCache) -> None:
        """Load the credential, profile and list-response schemas of ``spec``; verify
        proofs with ``proofs`` (its contexts and trusted keys).

        ``proofs`` remembers credentials whose proofs already verified: a CLR re-issued
        with unchanged embedded credentials costs one verification (the CLR's own), so the
        local stack measures cayg-sync rather than this stand-in. A changed byte anywhere
        in a credential or its proof misses the cache and is verified again.
        """
        self.spec = spec
        self.credential_schema = SchemaCheck(schemas_dir / spec.credential_schema)
        self.profile_schema = SchemaCheck(schemas_dir / spec.profile_schema)
        self.list_schema = SchemaCheck(schemas_dir / spec.list_schema)
        self._proofs = proofs

    def credential_errors(self, credential: Mapping[str, Any]) -> list[str]:
        """Everything wrong with an upserted credential; empty when it may be stored."""
        errors = [
            f"{self.credential_schema.name}: {e}" for e in self.credential_schema.errors(credential)
        ]
        errors.extend(self._proof_errors(credential, "credential"))
        if self.spec.api == "clr":
            subject = credential.get("credentialSubject")
            embedded = subject.get("verifiableCredential") if isinstance(subject, Mapping) else None
            items = embedded if isinstance(embedded, list) else [embedded] if embedded else []
            for index, item in enumerate(items):
                where = f"credentialSubject.verifiableCredential[{index}]"
                if not isinstance(item, Mapping):
                    errors.append(
                        f"{where}: embedded credentials must be JSON objects with an embedded "
                        "proof (compact JWS is not supported by this host)"
                    )
                    continue
                errors.extend(self._proof_errors(item, where))
        return errors

    def _proof_errors(self, credential: Mapping[str, Any], where: str) -> list[str]:
        try:
            self._proofs.verify(credential)
        except ProofError as exc:
            return [f"{where}: proof verification failed: {exc}"]
        return []
