"""Why an envelope cannot be mapped: :class:`MappingError` and its reason codes."""

from __future__ import annotations

from typing import Final

from pydantic import ValidationError


class Reason:
    """The short codes a :class:`MappingError` carries (``DeadLetter.reason``)."""

    TENANT_MISMATCH: Final = "tenant-mismatch"
    """The envelope's tenant is not the profile's, or a record makes another tenant's home
    institution act for it (home institution, program authorizer, credential offerer, the
    organization described), or an Ethos 'home' institution is not the configured one."""
    MISSING_DESCRIPTION: Final = "missing-description"
    """A definition has no description of at least 15 characters and the tenant's
    ``missing_description`` policy is ``refuse``."""
    UNSUPPORTED_FORMAT: Final = "unsupported-format"
    """An input format normalize does not map."""
    UNSUPPORTED_RESOURCE: Final = "unsupported-resource"
    """An Ethos resource normalize does not map."""
    UNSUPPORTED_VERSION: Final = "unsupported-version"
    """An Ethos resource version whose shape normalize does not know."""
    UNSUPPORTED_TYPE: Final = "unsupported-type"
    """A CloudEvent or backfill type normalize does not map."""
    MISSING_FIELD: Final = "missing-field"
    """A field the mapping needs is absent."""
    INVALID_FIELD: Final = "invalid-field"
    """A field has the wrong type or an impossible value."""
    INCONSISTENT_ID: Final = "inconsistent-id"
    """The content's id differs from the notification's resource id."""
    UNKNOWN_CREDENTIAL_TYPE: Final = "unknown-credential-type"
    """The credential type cannot be decided and the tenant's policy is ``reject``."""
    CTID_CONFLICT: Final = "ctid-conflict"
    """An event states a CTID other than the one the tenant imported or derives."""
    NO_LEARNER_IDENTIFIER: Final = "no-learner-identifier"
    """A person has no usable learner identifier (national ids are never used)."""
    INVALID_ENTITY: Final = "invalid-entity"
    """The mapped entity breaks a rule of the shared schema."""


class MappingError(Exception):
    """An envelope normalize cannot turn into changes; the handler parks it on the DLQ.

    ``detail`` names fields and rules, never values, so it cannot leak learner data.
    """

    def __init__(self, reason: str, detail: str, field_path: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        """A short code from :class:`Reason`."""
        self.detail = detail
        """What is wrong, for a human."""
        self.field_path = field_path
        """JSON path of the offending field in the envelope payload (``$.content.title``)."""


def json_path(prefix: str, location: tuple[str | int, ...]) -> str:
    """``prefix`` extended by a pydantic error location (``$.content.credentials[0].id``)."""
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def from_validation_error(error: ValidationError, prefix: str) -> MappingError:
    """The first problem of a validation error, as a :class:`MappingError` at its path."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    location = tuple(part for part in first["loc"] if not _is_union_tag(part))
    path = json_path(prefix, location)
    reason = Reason.MISSING_FIELD if first["type"] == "missing" else Reason.INVALID_FIELD
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return MappingError(reason, f"{path}: {first['msg']}{suffix}", path)


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the chosen union member's type name into locations ("function-after[…]")
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "list", "dict"})
