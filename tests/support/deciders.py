"""A record handler for the batch runner's tests, usable in a decision worker as well.

:class:`Echo` forwards each value: ``boom`` raises, ``twice`` has two outputs, and ``die``
ends the worker process it is decided in (in the test's own process it is forwarded like
any other value), and ``unpicklable`` decides in a worker into an outcome that cannot be
sent back to the service process. What settled is counted under the ``settled`` tally,
by partition and offset, and read back with :func:`settled`.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

from prometheus_client import CollectorRegistry, Counter

from cayg_shared.batching import Note, Outbound, Outcome, Tally, letter_for
from cayg_shared.envelope import Stage
from cayg_shared.service import InboundRecord

DLQ = "dlq"
OUT = "out"


class Echo:
    """Forwards each value; see the module doc for the special ones."""

    def decide(self, rec: InboundRecord) -> Outcome:
        if rec.value == b"boom":
            raise RuntimeError("a bug")
        in_worker = multiprocessing.parent_process() is not None
        if rec.value == b"die" and in_worker:
            os._exit(3)
        copies = 2 if rec.value == b"twice" else 1
        outputs = [Outbound.of(OUT, rec.key, rec.value or b"", {}) for _ in range(copies)]
        note = (
            Note("unpicklable", {"lock": threading.Lock()})
            if rec.value == b"unpicklable" and in_worker
            else None
        )
        counts = (("settled", (str(rec.partition), str(rec.offset))),)
        return Outcome(outputs, "ok", "t", counts, note)

    def poison(self, rec: InboundRecord, reason: str, detail: str) -> Outcome:
        letter = letter_for(rec, dlq_topic=DLQ, stage=Stage.INGEST, reason=reason, detail=detail)
        return Outcome([letter], f"rejected:{reason}")


def echo() -> Echo:
    """The factory a decision pool's workers build their handler with."""
    return Echo()


class Stamping(Echo):
    """Forwards as :class:`Echo` does, labelling each outcome with the deciding pid."""

    def decide(self, rec: InboundRecord) -> Outcome:
        outcome = super().decide(rec)
        outcome.label = str(os.getpid())
        return outcome


def stamping() -> Stamping:
    """The factory of :class:`Stamping` handlers."""
    return Stamping()


def echo_once(marker: str) -> Echo:
    """An :class:`Echo` factory that works once: it leaves ``marker`` (a file) behind and
    refuses every later build, as a worker started after a renewal may find its tenants
    file gone."""
    if os.path.exists(marker):
        raise RuntimeError("the handler can no longer be built")
    with open(marker, "w", encoding="utf-8"):
        pass
    return Echo()


class Settled:
    """The ``settled`` tally of a runner and what it counted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter = Counter(
            "settled", "records settled", ["partition", "offset"], registry=self.registry
        )
        self.tally = Tally(counter)

    def records(self) -> list[tuple[int, int]]:
        """(partition, offset) of each record counted, in order."""
        return sorted(
            (int(sample.labels["partition"]), int(sample.labels["offset"]))
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == "settled_total" and sample.value
        )
