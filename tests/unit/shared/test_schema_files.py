"""The committed JSON Schema files: in step with the models, and backward compatible.

* drift: ``shared/schemas`` and ``shared/cloudevents/schemas`` equal what the models
  export now (``python -m cayg_shared.export_schemas`` rewrites them);
* compatibility: every schema can still read what its golden v1 baseline
  (``tests/golden/schemas/v1``) accepted. The checker is tested against known breaking
  and non-breaking changes, so a silent checker cannot pass for a compatible schema.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cayg_shared import export_schemas

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
BASELINE = REPO / "tests" / "golden" / "schemas" / "v1"
CURRENT_DIRS = (REPO / "shared" / "schemas", REPO / "shared" / "cloudevents" / "schemas")

Schema = dict[str, Any]


# --------------------------------------------------------------------------- checker


class _Document:
    def __init__(self, root: Schema) -> None:
        self.root = root

    def resolve(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 50:
            pointer = node["$ref"]
            assert pointer.startswith("#/"), f"external $ref {pointer}"
            target: Any = self.root
            for part in pointer[2:].split("/"):
                target = target[part]
            extra = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **extra} if extra else target
            seen += 1
        return node


def _types(node: Schema) -> set[str] | None:
    value = node.get("type")
    if value is None:
        return None
    types = {value} if isinstance(value, str) else set(value)
    if "number" in types:
        types.add("integer")
    return types


def _values(node: Schema) -> set[str] | None:
    if "enum" in node:
        return {json.dumps(v, sort_keys=True) for v in node["enum"]}
    if "const" in node:
        return {json.dumps(node["const"], sort_keys=True)}
    return None


def incompatibilities(old: Schema, new: Schema) -> list[str]:
    """Ways in which ``new`` refuses data that ``old`` accepted (empty: compatible)."""
    return _compare(old, new, "$", _Document(old), _Document(new), set())


def _compare(
    old_node: Any,
    new_node: Any,
    path: str,
    old_doc: _Document,
    new_doc: _Document,
    seen: set[tuple[int, int]],
) -> list[str]:
    old = old_doc.resolve(old_node)
    new = new_doc.resolve(new_node)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new or new in ({}, True) else [f"{path}: schema changed"]
    marker = (id(old), id(new))
    if marker in seen:
        return []
    seen.add(marker)

    old_alternatives = old.get("anyOf") or old.get("oneOf")
    new_alternatives = new.get("anyOf") or new.get("oneOf")
    if old_alternatives or new_alternatives:
        problems: list[str] = []
        for index, alternative in enumerate(old_alternatives or [old]):
            if not any(
                not _compare(alternative, candidate, path, old_doc, new_doc, set(seen))
                for candidate in (new_alternatives or [new])
            ):
                problems.append(f"{path}: alternative {index} is no longer accepted")
        return problems

    problems = []
    old_types, new_types = _types(old), _types(new)
    if new_types is not None and (old_types is None or not old_types <= new_types):
        problems.append(f"{path}: type narrowed from {old_types} to {new_types}")
    old_values, new_values = _values(old), _values(new)
    if new_values is not None and (old_values is None or not old_values <= new_values):
        lost = sorted((old_values or {"<any>"}) - new_values)
        problems.append(f"{path}: values no longer accepted: {lost}")
    for key, tighter in (
        ("maxLength", min),
        ("maxItems", min),
        ("maximum", min),
        ("minLength", max),
        ("minItems", max),
        ("minimum", max),
    ):
        if key in new and (key not in old or tighter(old[key], new[key]) != old[key]):
            problems.append(f"{path}: {key} tightened to {new[key]}")
    if "pattern" in new and new.get("pattern") != old.get("pattern"):
        problems.append(f"{path}: pattern changed")

    old_props: Schema = old.get("properties", {})
    new_props: Schema = new.get("properties", {})
    if old_props or new_props:
        newly_required = set(new.get("required", ())) - set(old.get("required", ()))
        problems.extend(f"{path}.{name}: newly required" for name in sorted(newly_required))
        closed = new.get("additionalProperties") is False
        for name, old_prop in old_props.items():
            if name in new_props:
                problems += _compare(
                    old_prop, new_props[name], f"{path}.{name}", old_doc, new_doc, seen
                )
            elif closed and not any(re.match(p, name) for p in new.get("patternProperties", {})):
                problems.append(f"{path}.{name}: removed (unknown fields are refused)")
    if "items" in old and "items" in new:
        problems += _compare(old["items"], new["items"], f"{path}[]", old_doc, new_doc, seen)
    for key in ("additionalProperties",):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            problems += _compare(old[key], new[key], f"{path}.*", old_doc, new_doc, seen)
    return problems


def _current(name: str) -> Schema:
    for directory in CURRENT_DIRS:
        path = directory / name
        if path.is_file():
            loaded: Schema = json.loads(path.read_text(encoding="utf-8"))
            return loaded
    pytest.fail(f"{name} is in the v1 baseline but no longer exported")


# --------------------------------------------------------------------------- drift


def test_committed_schema_files_match_the_models() -> None:
    assert export_schemas.drift() == []


def test_the_export_command_checks_and_reports_drift(tmp_path: Path) -> None:
    for directory in CURRENT_DIRS:
        shutil.copytree(directory, tmp_path / directory.relative_to(REPO / "shared"))
    lines: list[str] = []
    assert export_schemas.main(["--check", "--root", str(tmp_path)], out=lines.append) == 0

    change = tmp_path / "schemas" / "change.json"
    change.write_text(change.read_text().replace('"upsert"', '"upsert-all"'))
    (tmp_path / "schemas" / "stale.json").write_text("{}")
    (tmp_path / "schemas" / "program.json").unlink()
    assert export_schemas.main(["--check", "--root", str(tmp_path)], out=lines.append) == 1
    report = "\n".join(lines)
    assert "differs from the models: schemas/change.json" in report
    assert "not produced by any model: schemas/stale.json" in report
    assert "missing: schemas/program.json" in report

    assert export_schemas.main(["--root", str(tmp_path)], out=lines.append) == 0
    (tmp_path / "schemas" / "stale.json").unlink()
    assert export_schemas.drift(tmp_path) == []


def test_every_public_message_model_is_exported() -> None:
    names = set(export_schemas.MODELS)
    assert {"ingest-envelope", "dead-letter", "change"} <= names
    for entity in ("organization", "credential-definition", "credential-award"):
        assert entity in names


# --------------------------------------------------------------------------- compatibility


BASELINE_FILES = sorted(p.name for p in BASELINE.glob("*.json"))


def test_the_baseline_covers_every_exported_schema() -> None:
    exported = {p.name for d in CURRENT_DIRS for p in d.glob("*.json")}
    assert exported <= set(BASELINE_FILES)


@pytest.mark.parametrize("name", BASELINE_FILES)
def test_current_schema_reads_everything_its_v1_baseline_accepted(name: str) -> None:
    baseline: Schema = json.loads((BASELINE / name).read_text(encoding="utf-8"))
    assert incompatibilities(baseline, _current(name)) == []


def _change_schema() -> Schema:
    loaded: Schema = json.loads((BASELINE / "change.json").read_text(encoding="utf-8"))
    return loaded


def _remove_award_field(s: Schema) -> None:
    del s["$defs"]["CredentialAward"]["properties"]["supersedes"]


def _require_optional_field(s: Schema) -> None:
    s["$defs"]["CredentialAward"]["required"].append("valid_until")


def _drop_enum_value(s: Schema) -> None:
    s["$defs"]["AwardStatus"]["enum"].remove("superseded")


def _tighten_length(s: Schema) -> None:
    s["properties"]["correlation_id"]["maxLength"] = 64


def _narrow_type(s: Schema) -> None:
    s["$defs"]["CreditValue"]["properties"]["value"]["anyOf"][0]["type"] = "integer"


BREAKING: dict[str, Callable[[Schema], None]] = {
    "removed field": _remove_award_field,
    "newly required": _require_optional_field,
    "removed enum value": _drop_enum_value,
    "tightened limit": _tighten_length,
    "narrowed type": _narrow_type,
}


@pytest.mark.parametrize("mutation", sorted(BREAKING))
def test_the_checker_catches_breaking_changes(mutation: str) -> None:
    old = _change_schema()
    new = copy.deepcopy(old)
    BREAKING[mutation](new)
    assert incompatibilities(old, new) != []


def test_the_checker_accepts_compatible_changes() -> None:
    old = _change_schema()
    new = copy.deepcopy(old)
    new["$defs"]["CredentialAward"]["properties"]["honors"] = {"type": "string"}
    new["$defs"]["AwardStatus"]["enum"].append("suspended")
    new["properties"]["correlation_id"]["maxLength"] = 256
    new["$defs"]["CredentialAward"]["required"].remove("awarded_on")
    assert incompatibilities(old, new) == []
