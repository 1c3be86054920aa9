"""Benchmark eddsa-rdfc-2022 signing of OB 3.0 / CLR 2.0 credentials: inline or in a
process pool, with or without the signature cache; and verification with or without the
verification cache.

Reproducible inputs: a fixed key (seed bytes 0..31), deterministic credential ids and
names; only the timings vary between runs. Scenarios (each for every ``--workers`` value;
0 means inline, in this process):

* ``ob``: ``-n`` distinct OpenBadgeCredentials, signed (every cache lookup a miss);
* ``clr``: ``-n`` learners' ClrCredentials of ``--awards`` distinct, unsigned
  AchievementCredentials each (every one signed, then the CLR; all misses);
* ``ob-cached``: the same credentials again through the now warm cache (all hits);
* ``clr-reissue``: the same CLRs re-issued with a warm cache after one more award and a
  new ``validFrom`` -- what publish does on an award change: the unchanged awards are
  cache hits, the new award and the CLR are signed;
* ``verify`` / ``verify-seen``: verifying the signed CLRs and their awards, as the CLR
  stand-in does, without and with the verification cache (inline only).

With workers, the documents of a scenario are submitted together (as a projector
delivering many documents would), so "ms/doc" is wall time divided by documents, i.e.
the inverse of throughput, not one document's latency. CPU is reported per document for
this process and for the workers (read when they exit, start-up subtracted), which holds
even on a busy machine where wall time does not.

    uv run python libs/signing/bench/bench_signing.py -n 40 --awards 5 --workers 0,2

Contexts and the CLR template come from ``--conformance`` (default:
``../shared/conformance`` beside the checkout, or ``CAYG_CONFORMANCE_DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cayg_signing import (
    ContextLoader,
    SignatureCache,
    SigningKey,
    SigningPool,
    VerificationCache,
    verify_credential,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = uuid.UUID("4c7f3b53-5b1e-4f43-9c55-7a1f8d0c2a10")
Json = dict[str, Any]


def default_conformance() -> Path:
    """``CAYG_CONFORMANCE_DIR``, else ``../shared/conformance`` beside the checkout."""
    configured = os.environ.get("CAYG_CONFORMANCE_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "conformance"


def _id(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '/'.join(map(str, parts)))}"


def badge(index: int, issuer: str) -> Json:
    """A small OpenBadgeCredential, distinct for each index."""
    return {
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
        ],
        "id": _id("badge", index),
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "issuer": {"id": issuer, "type": ["Profile"], "name": "Bench College"},
        "validFrom": "2024-01-01T00:00:00Z",
        "name": f"Badge {index}",
        "credentialSubject": {
            "id": f"did:example:learner-{index}",
            "type": ["AchievementSubject"],
            "achievement": {
                "id": f"https://bench.example/achievements/{index}",
                "type": ["Achievement"],
                "criteria": {"narrative": "Completed the course."},
                "description": "A benchmark achievement.",
                "name": f"Achievement {index}",
            },
        },
    }


def clr(template: Json, learner: int, awards: int) -> Json:
    """The CLR vector as learner ``learner``'s record of ``awards`` unsigned awards."""
    record = copy.deepcopy(template)
    record.pop("proof", None)
    record["id"] = _id("clr", learner)
    embedded = record["credentialSubject"]["verifiableCredential"][0]
    items = []
    for index in range(awards):
        award = {k: v for k, v in copy.deepcopy(embedded).items() if k != "proof"}
        award["id"] = _id("award", learner, index)
        award["name"] = f"Award {index} of learner {learner}"
        items.append(award)
    record["credentialSubject"]["verifiableCredential"] = items
    return record


def _children_cpu() -> float:
    """CPU seconds of this process's children that have exited (the pool's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Scenarios:
    """Runs each scenario in a pool of its own, so the workers' CPU can be read when they
    exit; their start-up and warm-up (measured once, on an idle pool) is subtracted."""

    def __init__(self, workers: int, contexts: Path, key: SigningKey, issuer: str) -> None:
        self.workers = workers
        self.contexts = contexts
        self.key = key
        self.issuer = issuer
        self.baseline = 0.0
        self._runs = 0

    def warmup(self) -> list[Json]:
        """Documents for an untimed warm-up (the first signature in a worker pays for
        imports and context processing), new each run so a shared cache cannot serve
        them."""
        self._runs += 1
        count = 2 * max(1, self.workers)
        return [badge(-1000 * self._runs - i, self.issuer) for i in range(count)]

    async def measure_baseline(self) -> None:
        """Workers' CPU for start-up and warm-up alone."""
        before = _children_cpu()
        async with SigningPool(self.contexts, max_workers=self.workers) as pool:
            await pool.sign_all(self.warmup(), self.key)
        self.baseline = _children_cpu() - before

    async def run(
        self,
        label: str,
        count: int,
        cache: SignatureCache,
        work: Callable[[SigningPool], Awaitable[Any]],
    ) -> Any:
        """Run ``work`` once on a fresh pool using ``cache``; print per-document costs:
        wall time (on a busy machine it includes waiting for a CPU), this process's CPU
        (inline: the signing itself; with workers: cache keys, pickling, the event loop)
        and the workers' CPU."""
        children_before = _children_cpu()
        async with SigningPool(self.contexts, max_workers=self.workers, cache=cache) as pool:
            await pool.sign_all(self.warmup(), self.key)
            cpu_start, start = time.process_time(), time.perf_counter()
            result = await work(pool)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
        workers_cpu = max(0.0, _children_cpu() - children_before - self.baseline)
        in_workers = f"{1000 * workers_cpu / count:8.2f}" if self.workers else "       -"
        print(
            f"{label:<12} workers={self.workers:<2} n={count:<4} wall {seconds:6.2f} s "
            f"{1000 * seconds / count:8.2f} ms/doc {count / seconds:8.1f} docs/s | cpu ms/doc: "
            f"here {1000 * cpu / count:7.2f}  workers {in_workers}",
            flush=True,
        )
        return result


async def run_signing(scenarios: Scenarios, badges: list[Json], records: list[Json]) -> list[Json]:
    """The signing scenarios for one pool size; returns the re-issued, signed CLRs."""
    key = scenarios.key
    if scenarios.workers:
        await scenarios.measure_baseline()
    # Cold runs go through a cache too (every lookup a miss), as in production; the same
    # cache, now holding every credential and CLR, then serves the warm runs.
    cache = SignatureCache()
    await scenarios.run("ob", len(badges), cache, lambda pool: pool.sign_all(badges, key))
    await scenarios.run(
        "clr",
        len(records),
        cache,
        lambda pool: asyncio.gather(*(pool.sign_with_embedded(r, key) for r in records)),
    )
    await scenarios.run("ob-cached", len(badges), cache, lambda pool: pool.sign_all(badges, key))
    reissued = [_reissue(r) for r in records]
    signed: list[Json] = await scenarios.run(
        "clr-reissue",
        len(reissued),
        cache,
        lambda pool: asyncio.gather(*(pool.sign_with_embedded(r, key) for r in reissued)),
    )
    print(f"{'':<12} cache after re-issue: {cache.stats}", flush=True)
    return signed


def _reissue(record: Json) -> Json:
    """The record after one more award, with a new validFrom."""
    again = copy.deepcopy(record)
    items = again["credentialSubject"]["verifiableCredential"]
    extra = copy.deepcopy(items[0])
    extra["id"] = _id("extra", again["id"])
    extra["name"] = "The newest award"
    items.append(extra)
    again["validFrom"] = "2025-01-01T00:00:00Z"
    return again


def all_documents(records: list[Json]) -> list[Json]:
    """Each CLR and each credential embedded in it, as the stand-in verifies them."""
    documents: list[Json] = []
    for record in records:
        documents.append(record)
        documents.extend(record["credentialSubject"]["verifiableCredential"])
    return documents


def run_verification(contexts: Path, trusted: dict[str, bytes], records: list[Json]) -> None:
    """Verification of the re-issued CLRs and their awards, inline, as the CLR stand-in
    does it: without the cache, then again through a cache that has seen them all."""
    loader = ContextLoader.from_directory(contexts)
    documents = all_documents(records)
    proofs = VerificationCache(loader, trusted_keys=trusted)
    for label, verify in (
        ("verify", lambda d: verify_credential(d, loader, trusted_keys=trusted)),
        ("verify-seen", proofs.verify),
    ):
        if label == "verify-seen":
            for document in documents:
                proofs.verify(document)  # the first delivery of each
        cpu_start, start = time.process_time(), time.perf_counter()
        for document in documents:
            verify(document)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        print(
            f"{label:<12} inline     n={len(documents):<4} wall {seconds:6.2f} s "
            f"{1000 * seconds / len(documents):8.2f} ms/doc | cpu ms/doc: "
            f"here {1000 * cpu / len(documents):7.2f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run every scenario."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=40, help="credentials and CLRs")
    parser.add_argument("--awards", type=int, default=5, help="awards in each CLR")
    parser.add_argument(
        "--workers",
        default=f"0,{os.cpu_count() or 1}",
        help="comma-separated pool sizes to run (0: inline); default 0 and the CPU count",
    )
    parser.add_argument("--conformance", type=Path, default=default_conformance())
    args = parser.parse_args(argv)

    contexts = args.conformance / "1edtech" / "contexts"
    template = json.loads(
        (args.conformance / "1edtech" / "vectors" / "clr_unsigned.json").read_text("utf-8")
    )
    key = SigningKey.from_seed(bytes(range(32)), "https://example.edu/issuers/565049#key-1")
    trusted = {key.verification_method: key.public_key}
    issuer = "https://example.edu/issuers/565049"
    badges = [badge(i, issuer) for i in range(args.count)]
    records = [clr(template, learner, args.awards) for learner in range(args.count)]
    sizes = [int(part) for part in args.workers.split(",") if part.strip()]

    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
        f"{args.count} OB credentials, {args.count} CLRs of {args.awards} awards",
        flush=True,
    )
    signed: list[Json] = []
    for workers in sizes:
        scenarios = Scenarios(workers, contexts, key, issuer)
        signed = asyncio.run(run_signing(scenarios, badges, records))
    if signed:
        run_verification(contexts, trusted, signed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
