"""Checks of the files an operator writes, with one precise message per problem.

``cayg config check`` and every service at start run the same checks: a service whose
tenant registry (or, for publish, targets file) has a problem exits at once with the first
problem on one line, instead of starting half-configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cayg_shared.tenants import TenantRegistry

#: Most problems reported for one file (a wholly wrong file would otherwise flood).
MAX_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file."""

    file: str
    where: str
    message: str

    def __str__(self) -> str:
        where = f" {self.where}:" if self.where else ""
        return f"{self.file}:{where} {self.message}"

    def as_json(self) -> dict[str, str]:
        """The problem as a JSON object (``cayg config check --json``)."""
        return {"file": self.file, "where": self.where, "message": self.message}


def location(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a path: ``tenants.acme.mapping.language``,
    ``ethos_publishers[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(error: Any) -> str:
    message = str(error.get("msg", "invalid"))
    # pydantic prefixes messages of custom validators with "Value error, ".
    message = message.removeprefix("Value error, ")
    if error.get("type") == "missing":
        return "required, but missing"
    if error.get("type") == "extra_forbidden":
        return "not a known setting (misspelt?)"
    if error.get("type") == "json_invalid":
        context = error.get("ctx") or {}
        return f"not valid JSON: {context.get('error', message)}"
    return message


def validation_problems(file: str | Path, error: ValidationError) -> list[Problem]:
    """Every error of a pydantic validation, as :class:`Problem` s (discriminated unions'
    tags are dropped from the path: ``tenants.acme.targets[1].api_key``)."""
    problems: list[Problem] = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not (isinstance(part, str) and part in _UNION_TAGS)]
        problems.append(Problem(str(file), location(loc), _message(item)))
    return problems[:MAX_PROBLEMS]


#: Tags pydantic inserts into locations of discriminated and plain unions.
_UNION_TAGS = frozenset(
    {"credential-engine", "clr", "sqlite", "postgres", "function-after", "str", "int"}
)


def check_tenants_file(path: Path) -> tuple[TenantRegistry | None, list[Problem]]:
    """Load the tenant registry at ``path``; its problems when it cannot be used."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        return None, [Problem(str(path), "", f"cannot read the tenant registry: {error.strerror}")]
    try:
        registry = TenantRegistry.from_json(raw)
    except ValidationError as error:
        return None, validation_problems(path, error)
    if not registry.tenants:
        return registry, [Problem(str(path), "tenants", "no tenant registered")]
    return registry, []


def first_line(problems: Iterable[Problem]) -> str:
    """The first problem, and how many more there are, as one line (for a service that
    refuses to start)."""
    listed = list(problems)
    if not listed:
        return ""
    more = len(listed) - 1
    tail = f" (and {more} more problem(s): run `cayg config check`)" if more else ""
    return f"{listed[0]}{tail}"
