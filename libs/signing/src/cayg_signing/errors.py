"""Errors raised by the signing package.

All of them are ``ValueError`` subclasses: each one means "this input (document, key,
context file) is not acceptable", never "try again later".
"""

from __future__ import annotations

__all__ = ["ContextError", "KeyFormatError", "ProofError", "SigningError", "UndefinedTermError"]


class ContextError(ValueError):
    """A JSON-LD context is unknown, unreadable, or does not match its sha256 pin."""


class KeyFormatError(ValueError):
    """A key, key file, multibase value or ``did:key`` identifier is malformed or inconsistent."""


class SigningError(ValueError):
    """A credential cannot be signed (or canonicalized) as given.

    Raised for documents that are not JSON, lack an ``@context``, already carry a proof,
    use terms the contexts do not define, or fail JSON-LD processing.
    """


class UndefinedTermError(SigningError):
    """The document uses terms, types or identifiers the JSON-LD contexts do not define.

    JSON-LD processors silently drop such data, so it would be shown to readers of the
    JSON but not covered by the signature. ``problems`` lists every offending item.
    """

    def __init__(self, problems: tuple[str, ...]) -> None:
        self.problems = problems
        super().__init__(
            "document uses data the JSON-LD contexts do not define (it would not be signed): "
            + "; ".join(problems)
        )

    def __reduce__(self) -> tuple[type[UndefinedTermError], tuple[tuple[str, ...]]]:
        # Pickled from ``problems``, not the message, so it survives the trip back from a
        # signing worker process (the default would pass the message as ``problems``).
        return (type(self), (self.problems,))


class ProofError(ValueError):
    """A credential's proof is missing, malformed, untrusted, or does not verify.

    ``reason`` is a human-readable explanation, also the exception message.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
