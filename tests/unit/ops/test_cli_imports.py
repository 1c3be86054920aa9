"""``cayg`` imports what a command needs when it runs: ``cayg backfill`` and ``cayg --help``
carry neither publish nor the signing library, and ``cayg issuer`` is still there.

The import checks run in a fresh interpreter: this test session has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cayg_ops import backfill, cli, dlq, issuer
from cayg_ops.cli import main
from cayg_publish.domain.projection import DocumentState

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
TENANTS_FILE = REPO / "deploy" / "config" / "tenants.json"
#: What only the publish-side commands need (ledger adapters, JSON-LD, PostgreSQL, tables).
HEAVY = ("cayg_publish", "cayg_signing", "pyld", "psycopg", "rich")

_LOADED = """
import contextlib, io, json, sys
from cayg_ops.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    status = main(sys.argv[1:])
roots = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"status": status, "roots": roots}))
"""


def _loaded_by(*args: str) -> tuple[int, set[str]]:
    """The exit status of ``cayg ARGS`` in a fresh interpreter, and the top-level
    packages it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["status"]), set(result["roots"])


def test_the_stand_in_constants_match_the_modules_they_stand_in_for() -> None:
    assert cli.STAGES == dlq.STAGES
    assert tuple(state.value for state in DocumentState) == cli.DOCUMENT_STATES
    assert cli.SERVICE_MAX_MESSAGE_BYTES == backfill.SERVICE_MAX_MESSAGE_BYTES
    assert issuer.issuer_app.info.help == cli.ISSUER_HELP


def test_a_backfill_imports_neither_publish_nor_signing(tmp_path: Path) -> None:
    rows = tmp_path / "awards.jsonl"
    rows.write_text(
        json.dumps(
            {
                "type": "definition.upserted",
                "recordedAt": "2024-11-04T15:20:00Z",
                "data": {"sourceId": "MS-1", "name": "Milestone", "sourceVersion": 1},
            }
        )
        + "\n"
    )
    status, roots = _loaded_by(
        "backfill", str(rows), "--tenant", "northfield-cc", "--tenants", str(TENANTS_FILE),
        "--dry-run",
    )  # fmt: skip
    assert status == 0
    assert "cayg_ops" in roots
    assert not roots & set(HEAVY)


def test_help_imports_no_command() -> None:
    status, roots = _loaded_by("--help")
    assert status == 0
    assert not roots & {*HEAVY, "aiokafka", "pydantic_settings"}


def test_issuer_is_listed_with_its_help_and_runs_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    line = next(text for text in listing.splitlines() if text.strip().startswith("issuer "))
    assert line.split(None, 1)[1].rstrip(".") in cli.ISSUER_HELP
    assert main(["issuer", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "Usage: cayg issuer [OPTIONS] COMMAND [ARGS]..." in shown
    assert "export" in shown
    assert "revoke-all" in shown
    assert main(["issuer", "nonsense"]) == cli.EXIT_USAGE
    assert "No such command 'nonsense'" in capsys.readouterr().err
