"""``cayg backfill`` stopped mid-run — Ctrl-C, then SIGKILL — and resumed with ``--resume``
against a real broker: every row lands on the tenant's topic, the repeats are at most the
one chunk in flight when the process died (same record ids, so downstream drops them), and
a resume against a file edited in between is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cayg_ops import checkpoint as checkpoint_store
from cayg_shared.topics import Topics
from support.topics import create_topics, end_offsets, read_to_end

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TENANTS = REPO / "deploy" / "config" / "tenants.json"
TENANT = "northfield-cc"
ROWS = 3_000
CHUNK = 25


def _history(count: int) -> bytes:
    rows = [
        {
            "type": "award.issued",
            "recordId": f"awards:{n}",
            "recordedAt": "2025-01-20T10:00:00Z",
            "data": {
                "awardId": f"HIST-{n:05d}",
                "learner": {"institutionId": f"{600_000 + n:07d}"},
                "definition": {"sourceId": "GENED-MS"},
                "awardedOn": "2016-06-01",
                "approach": "retro-award",
            },
        }
        for n in range(count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _argv(bootstrap: str, prefix: str, file: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cayg_ops",
        "--bootstrap",
        bootstrap,
        "--topic-prefix",
        prefix,
        "backfill",
        str(file),
        "--tenant",
        TENANT,
        "--tenants",
        str(TENANTS),
        "--batch-size",
        str(CHUNK),
        *extra,
    ]


def _stop_mid_run(
    argv: list[str], checkpoint: Path, how: signal.Signals, *, after: int
) -> tuple[int, str]:
    """Start the CLI, wait until the checkpoint counts ``after`` records, send ``how``."""
    with subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            saved = checkpoint_store.load(checkpoint) if checkpoint.exists() else None
            if saved is not None and saved.sent >= after:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be stopped"
        process.send_signal(how)
        _, err = process.communicate(timeout=120)
        return process.returncode, err


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


async def _record_ids(bootstrap: str, topic: str) -> Counter[str]:
    records = await read_to_end(bootstrap, [topic])
    return Counter(json.loads(r.value or b"{}")["recordId"] for r in records)


async def test_a_stopped_backfill_resumes_and_every_row_lands(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = Topics(topic_prefix).sis(TENANT)
    await create_topics(kafka_bootstrap, [topic])
    history = tmp_path / "history.jsonl"
    history.write_bytes(_history(ROWS))
    checkpoint = tmp_path / "state" / "history.checkpoint.json"
    argv = _argv(kafka_bootstrap, topic_prefix, history, "--checkpoint", str(checkpoint))

    # Ctrl-C: the run stops cleanly and says how to go on.
    status, err = await asyncio.to_thread(
        _stop_mid_run, argv, checkpoint, signal.SIGINT, after=4 * CHUNK
    )
    assert status == 130, err
    assert "--resume" in err
    interrupted = checkpoint_store.load(checkpoint)
    assert interrupted is not None
    assert 0 < interrupted.sent < ROWS
    assert not interrupted.complete

    # SIGKILL mid-resume: no goodbye, the checkpoint is whatever was last replaced whole.
    status, _ = await asyncio.to_thread(
        _stop_mid_run,
        [*argv, "--resume"],
        checkpoint,
        signal.SIGKILL,
        after=interrupted.sent + 4 * CHUNK,
    )
    assert status == -signal.SIGKILL
    killed = checkpoint_store.load(checkpoint)
    assert killed is not None
    assert interrupted.sent < killed.sent < ROWS
    assert killed.offset == len(b"".join(_history(ROWS).splitlines(keepends=True)[: killed.line]))

    done = await asyncio.to_thread(_run, [*argv, "--resume"])
    assert done.returncode == 0, done.stderr
    assert f"resuming after line {killed.line} ({killed.sent} of {ROWS} records" in done.stdout
    assert f"sent {ROWS - killed.sent} records to {topic}" in done.stdout
    assert "rows/s" in done.stderr
    assert f"{ROWS}/{ROWS}" in done.stderr

    landed = await _record_ids(kafka_bootstrap, topic)
    assert set(landed) == {f"awards:{n}" for n in range(ROWS)}, "every row, nothing else"
    repeats = sum(landed.values()) - ROWS
    # At most the chunk each stop caught in flight, sent again on resume.
    assert 0 <= repeats <= 2 * CHUNK
    finished = checkpoint_store.load(checkpoint)
    assert finished is not None
    assert finished.complete
    assert finished.sent == ROWS

    # The file is edited before another resume: refused, nothing sent.
    history.write_bytes(_history(ROWS).replace(b"HIST-00007", b"HIST-99999"))
    before = await end_offsets(kafka_bootstrap, [topic])
    refused = await asyncio.to_thread(_run, [*argv, "--resume"])
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "cannot resume: history.jsonl changed since the checkpoint" in refused.stderr
    assert await end_offsets(kafka_bootstrap, [topic]) == before
