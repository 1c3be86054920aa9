"""``cayg config check`` on real files: a good configuration passes; each kind of mistake
gets a message naming the file, the place in it and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cayg_ops.cli import main
from cayg_ops.demo import TENANTS_FILE, publish_config, tenant_secrets
from cayg_shared.tenants import TenantRegistry
from cayg_signing import SigningKey

pytestmark = pytest.mark.unit

TOPICS = TENANTS_FILE.parent / "topics.toml"


@pytest.fixture
def targets(tmp_path: Path) -> Path:
    registry = TenantRegistry.load(TENANTS_FILE)
    return publish_config(tmp_path, tenant_secrets(tmp_path, registry), registry)


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    status = main(["config", "check", "--tenants", str(TENANTS_FILE), *args, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_the_shipped_and_generated_files_pass(
    targets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = _check(capsys, "--targets-file", str(targets), "--topics-config", str(TOPICS))
    assert status == 0
    assert report["problems"] == []
    assert main(["config", "check", "--tenants", str(TENANTS_FILE)]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_each_mistake_is_named_precisely(
    targets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(targets.read_text())
    harbor = config["tenants"]["harbor-tech"]["targets"]
    other = tmp_path / "other-key.json"
    SigningKey.generate().write(other)
    harbor[1]["signing_key_file"] = str(other)
    harbor[0]["api_key"] = {"env": "CAYG_TEST_UNSET_KEY"}
    harbor[0]["publish_for_organization"] = "ce-00000000-0000-4000-8000-000000000000"
    config["tenants"]["lakeshore-univ"]["targets"][1]["base_url"] = "http://clr.example.org/x"
    config["tenants"]["nowhere"] = {"targets": []}
    targets.write_text(json.dumps(config))

    status, report = _check(capsys, "--targets-file", str(targets))
    assert status == 2
    listed: list[dict[str, str]] = report["problems"]  # type: ignore[assignment]
    problems = {(p["where"], p["message"]) for p in listed}
    wheres = {where for where, _ in problems}
    assert "tenants.harbor-tech.targets[1] (harbor-tech-clr).issuer.id" in wheres
    assert "tenants.harbor-tech.targets[0] (harbor-tech-registry).api_key" in wheres
    assert (
        "tenants.harbor-tech.targets[0] (harbor-tech-registry).publish_for_organization" in wheres
    )
    assert "tenants.lakeshore-univ.targets[1] (lakeshore-univ-clr).base_url" in wheres
    assert "tenants.nowhere" in wheres
    messages = " | ".join(message for _, message in problems)
    assert "environment variable CAYG_TEST_UNSET_KEY (a secret) is not set" in messages
    assert "plain http" in messages
    assert "not a tenant of the tenant registry" in messages

    # The same as text: one problem a line, then the count.
    assert main(["config", "check", "--targets-file", str(targets)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"{len(problems)} problem(s) in ")
    assert all(line.startswith(str(targets)) for line in lines[:-1])


def test_a_schema_error_names_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "publish.toml"
    broken.write_text('[[tenants.acme.targets]]\nkind = "clr"\nname = "acme-clr"\n')
    status, report = _check(capsys, "--targets-file", str(broken))
    assert status == 2
    found: list[dict[str, str]] = report["problems"]  # type: ignore[assignment]
    wheres = {p["where"] for p in found}
    assert "tenants.acme.targets[0].base_url" in wheres
    assert "tenants.acme.targets[0].issuer" in wheres
    missing = main(["config", "check", "--targets-file", str(tmp_path / "absent.toml")])
    assert missing == 2
    assert "cannot read" in capsys.readouterr().out
