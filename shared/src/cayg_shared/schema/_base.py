"""Building blocks shared by every model of the schema: the base class and constrained types.

Nothing here knows about credentials; it fixes how text, identifiers, URLs and learner
secrets behave everywhere, so that two services never disagree about what a valid value is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    StringConstraints,
    WithJsonSchema,
)

#: Serialization context key that lets learner identifiers out in clear text. Only the
#: Kafka encoding (:meth:`cayg_shared.schema.Change.to_kafka_value`) sets it.
REVEAL_LEARNER_IDENTIFIERS: Final = "cayg_reveal_learner_identifiers"
#: What a learner identifier looks like in every other serialization (logs, reprs, dumps).
MASKED: Final = "**********"

_CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Every ASCII control character, tab and line breaks included: text without any passes
#: :func:`_nfc_single_line` as it is.
_ASCII_CONTROL_OR_BREAK: Final = re.compile(r"[\x00-\x1f\x7f]")
_CTID_RE: Final = re.compile(
    r"^ce-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
)
_LANGUAGE_RE: Final = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"
_EMAIL_RE: Final = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")

T = TypeVar("T")


class DomainModel(BaseModel):
    """Base of every schema model: immutable, strict about unknown fields, self-documenting.

    ``hide_input_in_errors`` keeps input values (learner identifiers among them) out of
    validation error messages, which end up in DLQ records and logs.

    ``use_attribute_docstrings`` turns the docstring under each field into its JSON Schema
    ``description``, so the exported schema files read as documentation of the domain.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
        hide_input_in_errors=True,
    )


def _nfc(value: str) -> str:
    """Unicode NFC, so that composed and decomposed spellings of one name compare equal."""
    # ASCII text is its own NFC: most ids and names skip the normalizer's call.
    normalized = value if value.isascii() else unicodedata.normalize("NFC", value)
    if _CONTROL_CHARS.search(normalized):
        raise ValueError("text must not contain control characters")
    return normalized


def _single_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be a single line")
    return value


def _nfc_single_line(value: str) -> str:
    """:func:`_nfc` then :func:`_single_line` in one call (one validator per field is
    measurably cheaper than two: every name and id of every message passes here).

    ASCII text without any control character (tab and line breaks included) passes both
    unchanged, so it is answered by one search; anything else takes both checks, which
    also choose the error message.
    """
    if value.isascii() and _ASCII_CONTROL_OR_BREAK.search(value) is None:
        return value
    return _single_line(_nfc(value))


def _ctid(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        if not _CTID_RE.match(value):
            raise ValueError("a CTID is 'ce-' followed by a UUID")
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    if any(ch.isspace() for ch in value):
        raise ValueError("URLs must not contain whitespace")
    return value


def sorted_unique(values: Iterable[T]) -> tuple[T, ...]:
    """Duplicates removed and a stable order, so equal sets serialize (and hash) equally."""
    return tuple(sorted(set(values), key=str))


#: A set of values carried as a sorted tuple without duplicates (stable JSON, stable hashes).
UniqueTuple = Annotated[tuple[T, ...], AfterValidator(sorted_unique)]

#: A Credential Engine CTID, ``ce-`` + lowercase UUID (upper-case input is lower-cased).
Ctid = Annotated[str, BeforeValidator(_ctid), StringConstraints(max_length=39)]
#: A BCP 47 language tag such as ``en``, ``en-US`` or ``es-419``.
LanguageTag = Annotated[str, StringConstraints(pattern=_LANGUAGE_RE, max_length=35)]
#: An absolute http(s) URL, kept exactly as given (no normalization, so it round-trips).
WebUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2048), AfterValidator(_web_url)
]
#: A human-readable name or title: one line, NFC-normalized, any script.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=512),
    AfterValidator(_nfc_single_line),
]
#: Free text (descriptions, narratives): NFC-normalized, line breaks allowed. Bounded by
#: the largest message a tenant may be allowed (16 MiB, ``cayg_shared.tenants``), not
#: tighter: a long text ingest admitted must not be refused by normalize.
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=16 * 1024 * 1024),
    AfterValidator(_nfc),
]
#: An identifier the SIS gives a record (Ethos GUID, SIS code, backfill row id).
SourceId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256),
    AfterValidator(_nfc_single_line),
]
#: A short SIS code such as an abbreviation (``AAS``) or program code (``BUSAN.AAS``).
Code = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(_nfc_single_line),
]


def _check_learner_secret(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value().strip()
    if not raw or len(raw) > 320:
        raise ValueError("a learner identifier must have 1 to 320 characters")
    if raw == MASKED:
        raise ValueError(
            "a masked learner identifier cannot be read back; encode messages with "
            "Change.to_kafka_value(), which keeps identifiers",
        )
    if _CONTROL_CHARS.search(raw) or "\n" in raw:
        raise ValueError("a learner identifier must be one line without control characters")
    return SecretStr(raw)


def _check_email(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value().strip().lower()
    if not _EMAIL_RE.match(raw) or len(raw) > 254:
        raise ValueError("not an email address")
    return SecretStr(raw)


def _serialize_secret(value: SecretStr, info: SerializationInfo) -> str:
    context = info.context
    if isinstance(context, dict) and context.get(REVEAL_LEARNER_IDENTIFIERS) is True:
        return value.get_secret_value()
    return MASKED


#: A learner identifier (student number, SIS login…): hidden in ``repr``/``str`` and masked
#: in every serialization except the Kafka encoding of a :class:`Change`. Never log it.
LearnerSecret = Annotated[
    SecretStr,
    AfterValidator(_check_learner_secret),
    PlainSerializer(_serialize_secret, return_type=str, when_used="always"),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": 320, "writeOnly": True},
        mode="validation",
    ),
]
#: A learner's email address, lower-cased (so identity hashes are stable) and secret like
#: :data:`LearnerSecret`.
LearnerEmail = Annotated[
    SecretStr,
    AfterValidator(_check_learner_secret),
    AfterValidator(_check_email),
    PlainSerializer(_serialize_secret, return_type=str, when_used="always"),
    WithJsonSchema(
        {"type": "string", "format": "email", "maxLength": 254, "writeOnly": True},
        mode="validation",
    ),
]
