"""What a service under FastStream's in-memory ``TestKafkaBroker`` publishes, per topic.

Component tests register the service's real subscribers on a broker, add an
:class:`Outbox` for the topics the service writes to, and read back exactly what went
out: key, value and headers, in publication order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry

from cayg_shared.topics import Topics


@dataclass(frozen=True)
class Sent:
    """One record a service published."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]


class Outbox:
    """Subscribes to ``topics`` (no consumer group) and keeps every record they receive.

    Must be created before the broker is started, like any subscriber.
    """

    def __init__(self, broker: KafkaBroker, *topics: str) -> None:
        self._records: dict[str, list[Sent]] = {topic: [] for topic in topics}
        self._refusals: dict[str, Exception] = {}
        for topic in topics:
            self._subscribe(broker, topic)

    def _subscribe(self, broker: KafkaBroker, topic: str) -> None:
        @broker.subscriber(topic)
        async def keep(message: KafkaMessage) -> None:
            refusal = self._refusals.get(topic)
            if refusal is not None:
                raise refusal
            raw: Any = message.raw_message
            headers = {
                name: value.decode("utf-8")
                for name, value in (raw.headers or ())
                if value is not None
            }
            self._records[topic].append(Sent(raw.topic, raw.key, raw.value or b"", headers))

    def on(self, topic: str) -> list[Sent]:
        """Records published to ``topic`` so far."""
        return list(self._records[topic])

    def refuse(self, topic: str, error: Exception) -> None:
        """Make writes to ``topic`` fail with ``error``, like a broker that refuses them.

        In-memory, a publish runs the topic's subscribers inline, so the error reaches the
        service's ``publish`` call just as a failed produce would.
        """
        self._refusals[topic] = error

    def clear(self) -> None:
        """Forget what was recorded (between steps of one test)."""
        for records in self._records.values():
            records.clear()


@dataclass
class Harness:
    """A service's real subscriber on an in-memory broker, with what it published and
    the Prometheus registry its metrics went to."""

    broker: KafkaBroker
    topics: Topics
    outbox: Outbox
    metrics: CollectorRegistry

    def count(self, name: str, **labels: str) -> float:
        """A counter's value (0 when the labelled series was never touched)."""
        return self.metrics.get_sample_value(f"{name}_total", labels) or 0.0
