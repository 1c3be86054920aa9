"""Benchmark eddsa-rdfc-2022 signing (and verification) of OB 3.0 / CLR 2.0 credentials.

Reproducible: a fixed key (seed bytes 0..31), a fixed ``created`` time and deterministic
credential ids; only the timings vary between runs. Each credential differs (id, subject,
achievement name), so nothing can be served from a per-document cache.

    uv run python libs/signing/bench/bench_signing.py -n 200
    uv run python libs/signing/bench/bench_signing.py -n 50 \\
        --credential ../shared/conformance/1edtech/vectors/clr_unsigned.json

Contexts come from ``--contexts`` (default: ``../shared/conformance/1edtech/contexts``
beside the checkout), checked against the pins like in production.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cayg_signing import ContextLoader, SigningKey, sign_credential, verify_credential

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONTEXTS = REPO_ROOT.parent / "shared" / "conformance" / "1edtech" / "contexts"
CREATED = datetime(2024, 1, 1, tzinfo=UTC)
NAMESPACE = uuid.UUID("4c7f3b53-5b1e-4f43-9c55-7a1f8d0c2a10")


def badge(index: int, issuer: str) -> dict[str, Any]:
    """A small OpenBadgeCredential, distinct for each index."""
    return {
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
        ],
        "id": f"urn:uuid:{uuid.uuid5(NAMESPACE, str(index))}",
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


def from_template(template: dict[str, Any]) -> Callable[[int], dict[str, Any]]:
    """Copies of ``template`` with a distinct top-level id and name per index."""

    def make(index: int) -> dict[str, Any]:
        credential = copy.deepcopy(template)
        credential.pop("proof", None)
        credential["id"] = f"urn:uuid:{uuid.uuid5(NAMESPACE, str(index))}"
        credential["name"] = f"{credential.get('name', 'Credential')} {index}"
        return credential

    return make


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{label:<7} n={len(ms)}  mean {statistics.fmean(ms):.2f} ms  "
        f"median {statistics.median(ms):.2f} ms  p95 {p95:.2f} ms  "
        f"total {sum(ms) / 1000:.2f} s  ({len(ms) / (sum(ms) / 1000):.0f}/s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=100, help="credentials to sign")
    parser.add_argument("--warmup", type=int, default=5, help="untimed signatures first")
    parser.add_argument("--contexts", type=Path, default=DEFAULT_CONTEXTS)
    parser.add_argument(
        "--credential", type=Path, help="unsigned credential JSON to use as a template"
    )
    parser.add_argument("--no-verify", action="store_true", help="time signing only")
    args = parser.parse_args(argv)

    loader = ContextLoader.from_directory(args.contexts)
    key = SigningKey.from_seed(bytes(range(32)))
    issuer = key.did_key.partition("#")[0]
    if args.credential:
        make = from_template(json.loads(args.credential.read_text("utf-8")))
        trusted = {key.verification_method: key.public_key}
        source = str(args.credential)
    else:
        make = functools.partial(badge, issuer=issuer)
        trusted = {}
        source = "built-in OpenBadgeCredential"

    for index in range(args.warmup):
        sign_credential(make(-1 - index), key, loader, created=CREATED)

    credentials = [make(index) for index in range(args.count)]
    signed: list[dict[str, Any]] = []
    sign_times: list[float] = []
    for credential in credentials:
        start = time.perf_counter()
        signed.append(sign_credential(credential, key, loader, created=CREATED))
        sign_times.append(time.perf_counter() - start)

    print(f"python {platform.python_version()} on {platform.machine()}; credential: {source}")
    print(summary("sign", sign_times))
    if not args.no_verify:
        verify_times: list[float] = []
        for document in signed:
            start = time.perf_counter()
            verify_credential(document, loader, trusted_keys=trusted)
            verify_times.append(time.perf_counter() - start)
        print(summary("verify", verify_times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
