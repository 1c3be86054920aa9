"""What the deployment files (``deploy/k8s``, ``deploy/systemd``, ``deploy/image``) are
checked against: the services' settings classes, the workspace's entry points, and a
small reader of systemd environment files.

A manifest or unit that names an environment variable no settings class reads is
silently ignored by the service (pydantic-settings drops unknown names), so these
helpers turn such a typo into a test failure.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from cayg_ingest.settings import IngestSettings
from cayg_normalize.settings import NormalizeSettings
from cayg_publish.settings import PublishSettings

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The settings class each service command reads its environment into.
SETTINGS_BY_COMMAND: dict[str, type[BaseSettings]] = {
    "cayg-ingest": IngestSettings,
    "cayg-normalize": NormalizeSettings,
    "cayg-publish": PublishSettings,
}


def env_prefix(settings: type[BaseSettings]) -> str:
    """The prefix every environment name of ``settings`` starts with."""
    return str(settings.model_config.get("env_prefix", ""))


def field_path(settings: type[BaseSettings], name: str) -> tuple[str, ...]:
    """The settings field an environment variable sets, e.g.
    ``CAYG_INGEST_KAFKA__SASL_USERNAME`` -> ``("kafka", "sasl_username")``.

    Raises:
        AssertionError: the name has another prefix or names no field (a typo the
            service would silently ignore).
    """
    prefix = env_prefix(settings)
    assert name.startswith(prefix), f"{name} does not start with {prefix}"
    delimiter = settings.model_config.get("env_nested_delimiter") or "__"
    parts = tuple(name[len(prefix) :].lower().split(delimiter))
    model: type[BaseModel] = settings
    for index, part in enumerate(parts):
        fields = model.model_fields
        assert part in fields, f"{name}: {model.__name__} has no setting {part!r}"
        if index < len(parts) - 1:
            nested = _model_of(fields[part].annotation)
            assert nested is not None, f"{name}: {model.__name__}.{part} has no sub-settings"
            model = nested
    return parts


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in ``annotation`` (``Model`` or ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for member in typing.get_args(annotation):
            found = _model_of(member)
            if found is not None:
                return found
    return None


def workspace_scripts() -> dict[str, str]:
    """Every ``[project.scripts]`` entry of the workspace's members: name -> target."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    scripts: dict[str, str] = {}
    for member in root["tool"]["uv"]["workspace"]["members"]:
        project = tomllib.loads((REPO_ROOT / member / "pyproject.toml").read_text())["project"]
        scripts.update(project.get("scripts", {}))
    return scripts


def workspace_members() -> list[str]:
    """The workspace members' folders, relative to the repository root."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return list(root["tool"]["uv"]["workspace"]["members"])


_ENV_LINE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def read_environment_file(path: Path) -> dict[str, str]:
    """A systemd ``EnvironmentFile``, read the way systemd reads the subset we write:
    ``NAME=value`` lines, ``#`` comments, and values wholly inside single or double quotes
    (the quotes removed). A quote anywhere else would be removed by systemd mid-value, so
    it is refused here rather than read differently from systemd.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        match = _ENV_LINE.match(line)
        assert match, f"{path.name}:{number}: not NAME=value: {line!r}"
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            inner = value[1:-1]
            assert value[0] not in inner, f"{path.name}:{number}: nested quote"
            value = inner
        else:
            assert not set(value) & set("'\"\\"), (
                f"{path.name}:{number}: quote or backslash inside an unquoted value; "
                "systemd would strip it"
            )
        assert match["name"] not in values, f"{path.name}:{number}: {match['name']} set twice"
        values[match["name"]] = value
    return values
