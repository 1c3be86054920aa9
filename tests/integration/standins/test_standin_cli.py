"""The ``cayg-standins`` command: a real process, JSON access logs without secrets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cayg_standins.__main__ import main as cli_main
from integration.standins.standins_support import API_KEY, ORG

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_missing_conformance_data_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["registry", "--data-dir", str(tmp_path), "--conformance-dir", str(tmp_path / "none")]
    )
    assert code == 2
    assert "conformance data not found" in capsys.readouterr().err


def test_registry_command_serves_and_logs_json_lines(tmp_path: Path, conformance_dir: Path) -> None:
    executable = shutil.which("cayg-standins") or ""
    command = [executable] if executable else [sys.executable, "-m", "cayg_standins"]
    port = _free_port()
    admin_token = f"admin-{uuid.uuid4()}"
    (tmp_path / "admin-token").write_text(admin_token)
    process = subprocess.Popen(
        [
            *command,
            "registry",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--conformance-dir",
            str(conformance_dir),
            "--api-key",
            f"{API_KEY}={ORG}",
            "--admin-token-file",
            str(tmp_path / "admin-token"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "cayg-standins did not start"
            time.sleep(0.1)
        rejected = httpx.post(
            f"{base}/assistant/credential/publish",
            json={"PublishForOrganizationIdentifier": ORG, "Credential": {}},
            headers={"Authorization": f"ApiToken {API_KEY}"},
        )
        assert rejected.json()["Successful"] is False
        stats = httpx.get(f"{base}/_admin/stats", headers={"X-Admin-Token": admin_token})
        assert stats.status_code == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    requests = [line for line in lines if line.get("event") == "request"]
    assert {"path": "/assistant/credential/publish", "status": 200}.items() <= next(
        r for r in requests if r["path"] == "/assistant/credential/publish"
    ).items()
    assert API_KEY not in out
    assert admin_token not in out
