"""The services as an operator starts them (real processes, no broker): ``--help`` prints
every setting and exits 0; a configuration problem or a cluster that does not answer is
one line on stderr and a non-zero exit — never a traceback, never a live-looking process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cayg_ops.demo import TENANTS_FILE, publish_config, tenant_secrets
from cayg_shared.tenants import TenantRegistry
from cayg_signing import SigningKey
from support.kafka import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


def _run(service: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAYG_")}
    return subprocess.run(
        [sys.executable, "-m", f"cayg_{service}", *args],
        env={**clean, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _refusal(run: subprocess.CompletedProcess[str], service: str) -> str:
    assert run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"cayg-{service}: not started: ")
    assert "Traceback" not in run.stderr + run.stdout
    return run.stderr


@pytest.mark.parametrize("service", ["ingest", "normalize", "publish"])
def test_help_lists_the_settings_and_exits_0(service: str) -> None:
    shown = _run(service, {}, "--help")
    assert shown.returncode == 0, shown.stderr
    prefix = f"CAYG_{service.upper()}_"
    for setting in ("KAFKA__BOOTSTRAP_SERVERS", "KAFKA__SASL_PASSWORD_FILE", "TENANTS_FILE"):
        assert prefix + setting in shown.stdout
    assert "exit status" in shown.stdout


def test_configuration_problems_are_one_line_naming_the_services_own_variables(
    tmp_path: Path,
) -> None:
    unset = _run("normalize", {})
    assert unset.returncode == 2
    line = _refusal(unset, "normalize")
    assert "CAYG_NORMALIZE_TENANTS_FILE" in line
    assert "INGEST" not in line

    broken = tmp_path / "tenants.json"
    broken.write_text('{"tenants": {"acme": {"display_name": 7}}}')
    invalid = _run("normalize", {"CAYG_NORMALIZE_TENANTS_FILE": str(broken)})
    assert invalid.returncode == 2
    assert "tenants.acme" in _refusal(invalid, "normalize")

    wrong_type = _run("ingest", {"CAYG_INGEST_HTTP_PORT": "eighty"})
    assert wrong_type.returncode == 2
    assert "CAYG_INGEST_HTTP_PORT" in _refusal(wrong_type, "ingest")

    # Publish: an issuer whose signing key is another issuer's.
    registry = TenantRegistry.load(TENANTS_FILE)
    targets = publish_config(tmp_path, tenant_secrets(tmp_path, registry), registry)
    config = json.loads(targets.read_text())
    clr = config["tenants"]["harbor-tech"]["targets"][1]
    stranger = tmp_path / "stranger-key.json"
    SigningKey.generate().write(stranger)
    clr["signing_key_file"] = str(stranger)
    targets.write_text(json.dumps(config))
    env = {
        "CAYG_PUBLISH_TARGETS_FILE": str(targets),
        "CAYG_PUBLISH_TENANTS_FILE": str(TENANTS_FILE),
    }
    mismatch = _run("publish", env)
    assert mismatch.returncode == 2
    line = _refusal(mismatch, "publish")
    assert "tenants.harbor-tech.targets[1] (harbor-tech-clr).issuer.id" in line
    assert "does not belong to issuer" in line
    checked = _run("publish", env, "--check-config")
    assert checked.returncode == 2
    assert "stranger-key.json" in checked.stderr


def test_a_service_that_cannot_reach_kafka_exits_instead_of_serving(tmp_path: Path) -> None:
    port = free_port()
    started = _run(
        "ingest",
        {
            "CAYG_INGEST_TENANTS_FILE": str(TENANTS_FILE),
            "CAYG_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # the shared name
            "CAYG_INGEST_STARTUP_TIMEOUT_S": "2",
            "CAYG_INGEST_HTTP_PORT": str(port),
        },
    )
    assert started.returncode == 1
    line = _refusal(started, "ingest")
    assert "cannot reach Kafka at 127.0.0.1:" in line
    assert "connection refused" in line
    assert "waited 2 s" in line
