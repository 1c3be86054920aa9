"""What ``/metrics`` shows of a service with consumer processes: every process's series added
together (:func:`cayg_shared.consumers.merge`), and the decision workers' default beside
consumer processes."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from cayg_normalize.settings import NormalizeSettings
from cayg_shared.consumers import Family, exposed_registry, merge, snapshot
from cayg_shared.settings import default_decide_workers

pytestmark = pytest.mark.unit


def _process(accepted: dict[str, int], seconds: list[float]) -> CollectorRegistry:
    """One process's registry, as the services build theirs."""
    registry = CollectorRegistry()
    counter = Counter("cayg_test_accepted", "accepted", ["tenant"], registry=registry)
    for tenant, count in accepted.items():
        counter.labels(tenant).inc(count)
    histogram = Histogram("cayg_test_batch_seconds", "batch", buckets=(0.1, 1.0), registry=registry)
    for value in seconds:
        histogram.observe(value)
    Gauge("cayg_test_open", "open", registry=registry).set(len(seconds))
    return registry


def _values(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


def test_series_of_every_process_are_added_and_created_is_the_earliest() -> None:
    own = _process({"a": 2}, [0.05])
    first = _process({"a": 3, "b": 1}, [0.5, 2.0])
    second = _process({"b": 4}, [])

    merged = _values(merge(list(own.collect()), [snapshot(first), snapshot(second)]))

    assert merged[("cayg_test_accepted_total", (("tenant", "a"),))] == 5
    assert merged[("cayg_test_accepted_total", (("tenant", "b"),))] == 5
    assert merged[("cayg_test_batch_seconds_count", ())] == 3
    assert merged[("cayg_test_batch_seconds_sum", ())] == pytest.approx(2.55)
    assert merged[("cayg_test_batch_seconds_bucket", (("le", "0.1"),))] == 1
    assert merged[("cayg_test_batch_seconds_bucket", (("le", "1.0"),))] == 2
    assert merged[("cayg_test_batch_seconds_bucket", (("le", "+Inf"),))] == 3
    assert merged[("cayg_test_open", ())] == 3
    created = [
        s.value
        for registry in (own, first, second)
        for family in registry.collect()
        for s in family.samples
        if s.name == "cayg_test_accepted_created" and s.labels == {"tenant": "b"}
    ]
    assert merged[("cayg_test_accepted_created", (("tenant", "b"),))] == min(created)


def test_a_family_only_a_consumer_process_has_is_served_too() -> None:
    own = CollectorRegistry()
    Counter("cayg_test_own", "own", registry=own).inc()
    other = _process({"c": 7}, [])

    merged = _values(merge(list(own.collect()), [snapshot(other)]))

    assert merged[("cayg_test_own_total", ())] == 1
    assert merged[("cayg_test_accepted_total", (("tenant", "c"),))] == 7


def test_without_consumer_processes_the_registry_is_served_as_it_is() -> None:
    registry = _process({"a": 1}, [])
    assert exposed_registry(registry, None) is registry


def test_the_exposition_of_merged_series_is_valid_text() -> None:
    """One family per name in the text format, whatever the processes hold."""

    class Processes:
        def snapshots(self) -> list[list[Family]]:
            return [snapshot(_process({"a": 4}, [0.2]))]

    text = generate_latest(
        exposed_registry(_process({"a": 1}, [0.3]), Processes())  # type: ignore[arg-type]
    ).decode()
    assert text.count("# TYPE cayg_test_accepted_total counter") == 1
    assert 'cayg_test_accepted_total{tenant="a"} 5.0' in text
    assert "cayg_test_batch_seconds_count 2.0" in text


def test_consumer_processes_take_the_cores_instead_of_decision_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cayg_shared.settings.available_cpus", lambda: 4)
    assert NormalizeSettings(consumers=2).decide_workers == 0
    assert NormalizeSettings().decide_workers == default_decide_workers() == 4
    assert NormalizeSettings(consumers=2, decide_workers=3).decide_workers == 3
