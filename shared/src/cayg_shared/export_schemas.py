"""Export the JSON Schema of every public model to files under ``shared/``.

``python -m cayg_shared.export_schemas`` writes them; ``--check`` writes nothing and exits
1 when a committed file differs from the models (CI, and a unit test, run the check).

* ``shared/schemas/<name>.json`` — messages between services (envelope, dead letter,
  change), the entities, and the tenant registry file format;
* ``shared/cloudevents/schemas/<event type>.json`` — cayg's SIS event types, for vendors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from cayg_shared.envelope import DeadLetter, IngestEnvelope
from cayg_shared.schema import (
    BackfillRecord,
    CaygEventType,
    Change,
    CredentialAward,
    CredentialDefinition,
    EntityKey,
    LearnerIdentity,
    Organization,
    Program,
    SourceVersion,
    cloudevent_json_schema,
)
from cayg_shared.tenants import TenantRegistry

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_BASE: Final = "https://cayg-sync.org/schemas/"
#: The ``shared/`` directory of the checkout this module lives in.
SHARED_ROOT: Final = Path(__file__).resolve().parents[2]

#: File name (without ``.json``) → model, for ``shared/schemas/``.
MODELS: Final[dict[str, type[BaseModel]]] = {
    "ingest-envelope": IngestEnvelope,
    "dead-letter": DeadLetter,
    "change": Change,
    "entity-key": EntityKey,
    "source-version": SourceVersion,
    "organization": Organization,
    "credential-definition": CredentialDefinition,
    "credential-award": CredentialAward,
    "learner-identity": LearnerIdentity,
    "program": Program,
    "backfill-record": BackfillRecord,
    "tenant-registry": TenantRegistry,
}


def _model_schema(name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": SCHEMA_DIALECT, "$id": f"{ID_BASE}{name}.json", **schema}


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def rendered_schemas(root: Path = SHARED_ROOT) -> dict[Path, str]:
    """Every schema file, path → content, as the current models produce them."""
    files: dict[Path, str] = {}
    for name, model in MODELS.items():
        files[root / "schemas" / f"{name}.json"] = _render(_model_schema(name, model))
    for event_type in CaygEventType:
        path = root / "cloudevents" / "schemas" / f"{event_type.value}.json"
        files[path] = _render(cloudevent_json_schema(event_type))
    return files


def _managed_dirs(root: Path) -> tuple[Path, ...]:
    return (root / "schemas", root / "cloudevents" / "schemas")


def drift(root: Path = SHARED_ROOT) -> list[str]:
    """How the committed files differ from the models (empty: in step)."""
    expected = rendered_schemas(root)
    problems: list[str] = []
    for path, content in expected.items():
        if not path.is_file():
            problems.append(f"missing: {path.relative_to(root)}")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"differs from the models: {path.relative_to(root)}")
    for directory in _managed_dirs(root):
        if directory.is_dir():
            problems.extend(
                f"not produced by any model: {stale.relative_to(root)}"
                for stale in sorted(directory.glob("*.json"))
                if stale not in expected
            )
    return problems


def write(root: Path = SHARED_ROOT) -> list[Path]:
    """Write every schema file; returns the files that changed."""
    changed: list[Path] = []
    for path, content in rendered_schemas(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None, out: Callable[[str], object] = print) -> int:
    """Command line: write the schema files, or ``--check`` them."""
    parser = argparse.ArgumentParser(prog="python -m cayg_shared.export_schemas")
    parser.add_argument("--check", action="store_true", help="fail if files differ; write none")
    parser.add_argument("--root", type=Path, default=SHARED_ROOT, help="the shared/ directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.root)
        for problem in problems:
            out(problem)
        if problems:
            out("run: uv run python -m cayg_shared.export_schemas")
        return 1 if problems else 0
    for path in write(args.root):
        out(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
