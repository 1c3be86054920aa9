"""The operator CLI and a service on a cluster secured as the README recommends: SASL/SCRAM
(SCRAM-SHA-512) in plaintext and over TLS, configured only through the shared
``CAYG_KAFKA__*`` environment — and the dead-letter workflow end to end against a real
ingest process on that cluster.

One broker of its own for this module (its SCRAM user and listeners are made when its
storage is formatted); every test uses fresh topic names.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cayg_ops import dlq
from cayg_ops.cli import main
from cayg_ops.feed import sample_feed
from cayg_shared.settings import KafkaSettings
from cayg_shared.topics import Topics
from support.kafka import REPO_ROOT, SecuredBroker, secured_kafka_broker
from support.processes import ServiceProcess, service_env
from support.topics import read_to_end

pytestmark = pytest.mark.integration

TENANTS = REPO_ROOT / "deploy" / "config" / "tenants.json"
TENANT = "northfield-cc"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    with secured_kafka_broker(tmp_path_factory.mktemp("secured-kafka")) as broker:
        yield broker


def _sasl_env(broker: SecuredBroker, *, tls: bool = False) -> dict[str, str]:
    """The shared connection environment every cayg process reads."""
    env = {
        "CAYG_KAFKA__BOOTSTRAP_SERVERS": broker.sasl_ssl if tls else broker.sasl_plaintext,
        "CAYG_KAFKA__SECURITY_PROTOCOL": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "CAYG_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "CAYG_KAFKA__SASL_USERNAME": broker.username,
        "CAYG_KAFKA__SASL_PASSWORD_FILE": str(broker.password_file),
    }
    if tls:
        env["CAYG_KAFKA__SSL_CAFILE"] = str(broker.cafile)
    return env


def _kafka(broker: SecuredBroker) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.sasl_plaintext,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=broker.username,
        sasl_password_file=broker.password_file,
    )


def _cayg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``cayg`` as an operator runs it: a process with its environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAYG_")}
    return subprocess.run(
        [sys.executable, "-m", "cayg_ops", *args],
        env={**clean, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line(run: subprocess.CompletedProcess[str]) -> str:
    assert run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr


def test_the_cli_works_on_a_brand_new_secured_cluster(
    secured: SecuredBroker, topic_prefix: str
) -> None:
    env = {**_sasl_env(secured), "CAYG_TOPIC_PREFIX": topic_prefix}

    # First contact: no consumer group, no __consumer_offsets, no group coordinator yet.
    first = _cayg(env, "status", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {row["partitions"] for row in report["consumer_lag"]} == {0}
    assert report["dead_letters"]["ingest"]["held"] == 0

    created = _cayg(env, "topics", "apply", "--replication-factor", "1", "--json")
    assert created.returncode == 0, created.stderr
    topics = {row["topic"]: row for row in json.loads(created.stdout)["topics"]}
    names = Topics(topic_prefix)
    assert topics[names.ingest_dlq]["action"] == "created"
    assert topics[names.ingest_dlq]["configs"]["retention.ms"] == "7776000000"
    assert topics[names.dlq_actions]["configs"]["cleanup.policy"] == "compact"
    assert topics[names.sis("harbor-tech")]["partitions"] == 6
    # Read back from the broker: every topic has the partitions and settings of the file.
    again = _cayg(env, "topics", "apply", "--replication-factor", "1", "--json")
    assert again.returncode == 0, again.stderr
    assert {row["action"] for row in json.loads(again.stdout)["topics"]} == {"exists"}

    # The same over TLS, trusting the test CA.
    tls = _cayg({**_sasl_env(secured, tls=True), "CAYG_TOPIC_PREFIX": topic_prefix}, "status")
    assert tls.returncode == 0, tls.stderr
    assert "consumer lag" in tls.stdout
    assert "dead letters" in tls.stdout

    # What goes wrong is said in one line, with exit status 3.
    wrong = env | {"CAYG_KAFKA__SASL_PASSWORD_FILE": str(_file(secured, "wrong", "nope"))}
    denied = _cayg(wrong, "status")
    assert denied.returncode == 3
    assert "SASL authentication failed for user 'cayg-operator'" in _one_line(denied)
    untrusted = _sasl_env(secured, tls=True)
    del untrusted["CAYG_KAFKA__SSL_CAFILE"]
    refused = _cayg(untrusted, "dlq", "list")
    assert refused.returncode == 3
    assert "TLS certificate not trusted" in _one_line(refused)
    nobody = _cayg(env, "--bootstrap", "127.0.0.1:1", "status")
    assert nobody.returncode == 3
    assert "connection refused" in _one_line(nobody)
    bad_file = _cayg(env, "config", "check", "--tenants", str(secured.cafile))
    assert bad_file.returncode == 2
    assert "not valid JSON" in bad_file.stdout


def _file(broker: SecuredBroker, name: str, text: str) -> Path:
    path = broker.password_file.parent / name
    path.write_text(text)
    return path


def _cli(*args: str) -> tuple[int, Any]:
    """``cayg … --json`` in this process (the environment is the test's)."""
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        status = main([*args, "--json"])
    return status, json.loads(out.getvalue())


def _produce(broker: SecuredBroker, topic: str, values: list[bytes]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(
            **_kafka(broker).client_options(), acks="all", max_request_size=4 * 1024 * 1024
        )
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=b"k")
        finally:
            await producer.stop()

    asyncio.run(send())


def _wait_for_letters(broker: SecuredBroker, topics: Topics, count: int) -> list[dlq.Letter]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = asyncio.run(dlq.letters(_kafka(broker), topics))
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} letters parked in 60 s")


def test_dead_letters_are_replayed_once_fixed_and_never_listed_twice(
    secured: SecuredBroker, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**_sasl_env(secured), "CAYG_TOPIC_PREFIX": topic_prefix}.items():
        monkeypatch.setenv(name, value)
    topics = Topics(topic_prefix)
    status, applied = _cli("topics", "apply", "--replication-factor", "1")
    assert status == 0, applied

    # Ingest on the secured cluster: only its bootstrap is its own, the rest is shared.
    # A 1 KiB limit parks a valid Ethos notification padded past it as too-large.
    def ingest(limit: str) -> ServiceProcess:
        env = service_env("ingest", secured.sasl_plaintext, topic_prefix, TENANTS)
        env["CAYG_INGEST_MAX_MESSAGE_BYTES"] = limit
        return ServiceProcess("ingest", env=env, log_dir=tmp_path)

    valid = next(m for m in sample_feed() if m.tenant == TENANT and b'"resource"' in m.value)
    padded = valid.value + b" " * 3000
    huge = b'{"padding": "' + b"x" * 700_000 + b'"}'
    service = ingest("1024")
    service.start()
    try:
        _produce(secured, topics.sis(TENANT), [b"{not json", padded, b"{still not", huge])
        parked = _wait_for_letters(secured, topics, 4)
    finally:
        service.stop()
    assert sorted(letter.reason for letter in parked) == [
        "not-json",
        "not-json",
        "too-large",
        "too-large",
    ]

    status, listed = _cli("dlq", "list", "--tenant", TENANT)
    assert status == 0
    assert len(listed) == 4
    assert {row["state"] for row in listed} == {"open"}
    assert all(row["failed_at"] and row["tenant"] == TENANT for row in listed)
    assert len(_cli("dlq", "list", "--reason", "not-json")[1]) == 2
    assert len(_cli("dlq", "list", "--since", "1h")[1]) == 4
    assert _cli("dlq", "list", "--until", "2020-01-01")[1] == []
    assert _cli("dlq", "list", "--stage", "normalize")[1] == []
    truncated = next(row for row in listed if not row["replayable"])
    assert "keeps only the first 614400 bytes" in truncated["not_replayable_because"]

    # A dry run says what would happen, and exits 0.
    status, dry = _cli("dlq", "replay", "--reason", "too-large")
    assert status == 0
    assert dry["dry_run"] is True
    assert len(dry["would_replay"]) == 1
    assert [row["letter"] for row in dry["not_replayable"]] == [truncated["letter"]]

    service = ingest("1048576")  # the limit is raised: too-large is fixed, not-json is not
    service.start()
    try:
        status, broken = _cli("dlq", "replay", "--reason", "not-json", "--yes", "--wait", "60")
        assert status == 1, "still broken"
        assert [row["outcome"] for row in broken["replayed"]] == ["failed-again"] * 2
        assert {row["failed_again"]["reason"] for row in broken["replayed"]} == {"not-json"}

        status, fixed = _cli("dlq", "replay", "--reason", "too-large", "--yes", "--wait", "60")
        assert status == 1, "the truncated letter could not be replayed"
        assert [row["outcome"] for row in fixed["replayed"]] == ["accepted"]
        assert len(fixed["not_replayable"]) == 1
    finally:
        service.stop()
    accepted = asyncio.run(read_to_end(_kafka_plain(secured), [topics.ingested]))
    assert len(accepted) == 1

    # The copies that failed again are folded into their originals: still 4 letters to
    # look at, minus the one that was fixed; nothing listed twice.
    status, remaining = _cli("dlq", "list")
    assert sorted((row["reason"], row["state"]) for row in remaining) == [
        ("not-json", "failed-again"),
        ("not-json", "failed-again"),
        ("too-large", "open"),
    ]
    everything = _cli("dlq", "list", "--all")[1]
    assert sorted(row["state"] for row in everything) == [
        "failed-again",
        "failed-again",
        "open",
        "repeat",
        "repeat",
        "replayed",
    ]

    status, resolved = _cli(
        "dlq", "resolve", "--letter", truncated["letter"], "--note", "SIS resends", "--yes"
    )
    assert status == 0
    assert resolved["resolved"] == 1
    status, report = _cli("status")
    assert report["dead_letters"]["ingest"] == {
        "held": 6,
        "failed-again": 2,
        "replayed": 1,
        "resolved": 1,
        "repeat": 2,
    }


def _kafka_plain(broker: SecuredBroker) -> str:
    """The broker's own PLAINTEXT listener, for the test's reads."""
    return broker.plaintext
