"""How each service's consumer fetches: its own defaults, overridable, bounded, and handed
to the Kafka consumer it builds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from cayg_ingest.settings import IngestSettings
from cayg_normalize.settings import NormalizeSettings
from cayg_publish.handlers import PublishMetrics, register
from cayg_publish.settings import PublishSettings
from cayg_shared import batching
from cayg_shared.batching import BatchLoop, Subscription
from cayg_shared.settings import BATCH_FETCH_MAX_WAIT_MS, BATCH_FETCH_MIN_BYTES

pytestmark = pytest.mark.unit


def test_ingest_and_normalize_take_each_record_at_once() -> None:
    for settings in (IngestSettings(), NormalizeSettings()):
        assert settings.consumer_options() == {
            "fetch_min_bytes": BATCH_FETCH_MIN_BYTES,
            "fetch_max_wait_ms": BATCH_FETCH_MAX_WAIT_MS,
        }
    assert BATCH_FETCH_MIN_BYTES == 1


def test_publish_waits_briefly_for_a_batch() -> None:
    settings = PublishSettings()
    assert settings.consumer_options() == {"fetch_min_bytes": 65536, "fetch_max_wait_ms": 100}


def test_each_service_reads_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAYG_PUBLISH_FETCH_MIN_BYTES", "1")
    monkeypatch.setenv("CAYG_PUBLISH_FETCH_MAX_WAIT_MS", "500")
    monkeypatch.setenv("CAYG_NORMALIZE_FETCH_MAX_WAIT_MS", "20")
    assert PublishSettings().consumer_options() == {
        "fetch_min_bytes": 1,
        "fetch_max_wait_ms": 500,
    }
    assert NormalizeSettings().fetch_max_wait_ms == 20
    assert IngestSettings().fetch_max_wait_ms == BATCH_FETCH_MAX_WAIT_MS


@pytest.mark.parametrize(
    ("name", "value"),
    [("FETCH_MIN_BYTES", "0"), ("FETCH_MIN_BYTES", "99999999"), ("FETCH_MAX_WAIT_MS", "-1")],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"CAYG_PUBLISH_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        PublishSettings()


def test_publish_hands_its_fetch_settings_to_its_consumer() -> None:
    broker = KafkaBroker("127.0.0.1:9")
    settings = PublishSettings(fetch_min_bytes=4096, fetch_max_wait_ms=250)

    async def record(changes: Any) -> Any:
        raise AssertionError("never called: nothing is consumed")

    register(broker, settings, record, PublishMetrics(CollectorRegistry()))

    (subscriber,) = broker.subscribers
    arguments = subscriber._connection_args  # type: ignore[attr-defined]
    assert arguments["fetch_min_bytes"] == 4096
    assert arguments["fetch_max_wait_ms"] == 250


class _Refused(Exception):
    pass


class _NoPool:
    """A runner without decision workers (start only looks at ``pool``)."""

    pool = None


def test_the_batch_loop_hands_its_fetch_settings_to_its_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []

    class Consumer:
        def __init__(self, **options: Any) -> None:
            made.append(options)

        async def start(self) -> None:
            raise _Refused

    class Producer:
        def __init__(self, **options: Any) -> None:
            del options

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

    monkeypatch.setattr(batching, "AIOKafkaConsumer", Consumer)
    monkeypatch.setattr(batching, "AIOKafkaProducer", Producer)
    settings = NormalizeSettings(fetch_min_bytes=2048, fetch_max_wait_ms=30)
    loop = BatchLoop(
        settings,
        _NoPool(),  # type: ignore[arg-type]
        Subscription(topics=("cayg.ingested.v1",)),
        client_id="cayg-normalize",
        max_records=10,
    )
    with pytest.raises(_Refused):
        asyncio.run(loop.start())
    assert made[0]["fetch_min_bytes"] == 2048
    assert made[0]["fetch_max_wait_ms"] == 30
