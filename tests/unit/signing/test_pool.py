"""SigningPool: worker processes sign the same bytes as inline signing, behind the cache.

These start real worker processes (spawned, two at most): they are slower than the other
unit tests but still need no network or broker.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cayg_signing import (
    ContextLoader,
    SignatureCache,
    SigningKey,
    SigningPool,
    UndefinedTermError,
    sign_credential,
    verify_credential,
)
from cayg_signing.pool import _worker_ready

pytestmark = pytest.mark.unit

Json = dict[str, Any]
CREATED = datetime(2010, 1, 1, 19, 23, 24, tzinfo=UTC)  # the vectors' proof.created


def _vector(edtech: Path, name: str) -> Json:
    data: Json = json.loads((edtech / "vectors" / name).read_text("utf-8"))
    return data


@pytest.fixture(scope="module")
async def pool(edtech: Path) -> AsyncIterator[SigningPool]:
    """Two worker processes, shared by this module's tests (spawning costs ~a second)."""
    async with SigningPool(edtech / "contexts", max_workers=2) as started:
        yield started


def _clr_with_unsigned_awards(edtech: Path, count: int) -> Json:
    """The CLR vector holding ``count`` distinct, unsigned AchievementCredentials."""
    clr = _vector(edtech, "clr_unsigned.json")
    template = clr["credentialSubject"]["verifiableCredential"][0]
    awards = []
    for index in range(count):
        award = {k: v for k, v in copy.deepcopy(template).items() if k != "proof"}
        award["id"] = f"urn:uuid:00000000-0000-4000-8000-{index:012d}"
        award["name"] = f"Award {index}"
        awards.append(award)
    clr["credentialSubject"]["verifiableCredential"] = awards
    return clr


async def test_workers_sign_the_same_bytes_as_inline_signing(
    pool: SigningPool,
    edtech: Path,
    loader: ContextLoader,
    vector_key: SigningKey,
    trusted: dict[str, bytes],
) -> None:
    document = _vector(edtech, "ob_unsigned.json")
    in_worker = await pool.sign(document, vector_key, created=CREATED)
    inline = sign_credential(document, vector_key, loader, created=CREATED)
    assert json.dumps(in_worker, sort_keys=True) == json.dumps(inline, sort_keys=True)
    assert (
        in_worker["proof"]["proofValue"] == _vector(edtech, "ob_signed.json")["proof"]["proofValue"]
    )
    verify_credential(in_worker, loader, trusted_keys=trusted)


async def test_work_runs_in_other_processes(pool: SigningPool) -> None:
    # The pool's executor and its readiness task are private; they are the only way to
    # see which process runs the work.
    executor = pool._executor
    assert executor is not None
    loop = asyncio.get_running_loop()
    pids = {await loop.run_in_executor(executor, _worker_ready) for _ in range(4)}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= pool.max_workers == 2


async def test_workers_run_at_the_lower_priority_asked_for(edtech: Path) -> None:
    loop = asyncio.get_running_loop()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    async with SigningPool(edtech / "contexts", max_workers=1, worker_nice=3) as niced:
        executor = niced._executor
        assert executor is not None
        pid = await loop.run_in_executor(executor, _worker_ready)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(own + 3, 19)
    # The service itself keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


def test_worker_nice_is_nices_range(edtech: Path) -> None:
    with pytest.raises(ValueError, match="worker_nice"):
        SigningPool(edtech / "contexts", max_workers=1, worker_nice=20)
    with pytest.raises(ValueError, match="worker_nice"):
        SigningPool(edtech / "contexts", max_workers=1, worker_nice=-1)


async def test_cache_sits_in_front_of_the_workers(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey, trusted: dict[str, bytes]
) -> None:
    cache = SignatureCache()
    async with SigningPool(edtech / "contexts", max_workers=1, cache=cache) as pool:
        document = _vector(edtech, "ob_unsigned.json")
        first = await pool.sign(document, vector_key)
        again = await pool.sign(document, vector_key)
    assert again == first  # the original created is kept
    assert cache.stats.hits == 1
    assert cache.stats.misses == 1
    verify_credential(again, loader, trusted_keys=trusted)


async def test_nested_credentials_are_signed_once_per_content(
    pool: SigningPool, edtech: Path, loader: ContextLoader, trusted: dict[str, bytes]
) -> None:
    key = SigningKey.from_seed(bytes(32), "https://example.edu/issuers/565049#pool-test")
    keys = {**trusted, key.verification_method: key.public_key}
    before = pool.cache.stats
    clr = _clr_with_unsigned_awards(edtech, 3)
    first = await pool.sign_with_embedded(clr, key)
    # Re-issued with one more award and a new validFrom: only that award and the CLR
    # itself are signed again; the three unchanged awards come back as they were.
    reissue = _clr_with_unsigned_awards(edtech, 4)
    reissue["validFrom"] = "2011-01-01T00:00:00Z"
    second = await pool.sign_with_embedded(reissue, key)
    after = pool.cache.stats
    assert after.hits - before.hits == 3
    assert after.misses - before.misses == 4 + 1 + 1
    awards_first = first["credentialSubject"]["verifiableCredential"]
    awards_second = second["credentialSubject"]["verifiableCredential"]
    assert awards_second[:3] == awards_first
    for document in (first, second, *awards_second):
        verify_credential(document, loader, trusted_keys=keys)


@pytest.mark.parametrize("workers", [2, 0], ids=["in-workers", "inline"])
async def test_a_clr_and_its_awards_are_signed_as_one_by_one_inline_signing(
    workers: int, edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    # The awards and the CLR go to a worker in one task; with a fixed created time the
    # bytes must be those of signing each award, then the CLR around them, in this process.
    clr = _clr_with_unsigned_awards(edtech, 3)
    expected_awards = [
        sign_credential(award, vector_key, loader, created=CREATED)
        for award in clr["credentialSubject"]["verifiableCredential"]
    ]
    expected = sign_credential(
        {
            **clr,
            "credentialSubject": {
                **clr["credentialSubject"],
                "verifiableCredential": expected_awards,
            },
        },
        vector_key,
        loader,
        created=CREATED,
    )
    async with SigningPool(edtech / "contexts", max_workers=workers) as pool:
        signed = await pool.sign_with_embedded(clr, vector_key, created=CREATED)
        # Each award and the CLR are now in the cache under their own keys.
        again = await pool.sign_with_embedded(clr, vector_key, created=CREATED)
        for award in clr["credentialSubject"]["verifiableCredential"]:
            assert await pool.sign(award, vector_key, created=CREATED) in expected_awards
        stats = pool.cache.stats
    assert signed == expected
    assert again == expected
    assert (stats.misses, stats.hits) == (3 + 1, 3 + 1 + 3)
    # The caller's document is left as it was.
    assert all("proof" not in a for a in clr["credentialSubject"]["verifiableCredential"])


async def test_an_embedded_credential_that_cannot_be_signed_fails_the_whole_clr(
    pool: SigningPool, edtech: Path, vector_key: SigningKey
) -> None:
    clr = _clr_with_unsigned_awards(edtech, 2)
    clr["credentialSubject"]["verifiableCredential"][1]["undefinedTerm"] = "x"
    before = pool.cache.stats
    with pytest.raises(UndefinedTermError) as caught:
        await pool.sign_with_embedded(clr, vector_key, created=CREATED)
    assert any("undefinedTerm" in problem for problem in caught.value.problems)
    # Nothing of the failed task was cached.
    assert pool.cache.stats.size == before.size


async def test_already_signed_embedded_credentials_are_left_as_they_are(
    pool: SigningPool, edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    clr = _vector(edtech, "clr_unsigned.json")
    signed = await pool.sign_with_embedded(clr, vector_key, created=CREATED)
    assert (
        signed["credentialSubject"]["verifiableCredential"]
        == clr["credentialSubject"]["verifiableCredential"]
    )
    assert signed == sign_credential(clr, vector_key, loader, created=CREATED)


async def test_sign_all_keeps_the_order(
    pool: SigningPool, edtech: Path, vector_key: SigningKey
) -> None:
    unsigned = _vector(edtech, "ob_unsigned.json")
    documents = [{**unsigned, "name": f"Badge {i}"} for i in range(5)]
    signed = await pool.sign_all(documents, vector_key, created=CREATED)
    assert [d["name"] for d in signed] == [f"Badge {i}" for i in range(5)]


async def test_signing_errors_come_back_from_the_worker_intact(
    pool: SigningPool, edtech: Path, vector_key: SigningKey
) -> None:
    document = {**_vector(edtech, "ob_unsigned.json"), "undefinedTerm": "x"}
    with pytest.raises(UndefinedTermError) as caught:
        await pool.sign(document, vector_key)
    assert caught.value.problems
    assert all("undefinedTerm" in problem for problem in caught.value.problems)


async def test_inline_mode_signs_without_workers(
    edtech: Path, loader: ContextLoader, vector_key: SigningKey
) -> None:
    pool = SigningPool(edtech / "contexts", max_workers=0)
    document = _vector(edtech, "ob_unsigned.json")
    signed = await pool.sign(document, vector_key, created=CREATED)
    assert signed == sign_credential(document, vector_key, loader, created=CREATED)
    assert pool._executor is None
    await pool.aclose()


async def test_a_closed_pool_refuses_work_and_closing_twice_is_fine(
    edtech: Path, vector_key: SigningKey
) -> None:
    pool = SigningPool(edtech / "contexts", max_workers=1)
    await pool.start()
    await pool.aclose()
    await pool.aclose()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.sign(_vector(edtech, "ob_unsigned.json"), vector_key)


def test_default_size_is_the_machine_and_negative_is_refused(edtech: Path) -> None:
    pool = SigningPool(edtech / "contexts")
    try:
        assert pool.max_workers == (os.cpu_count() or 1)
    finally:
        pool.close()
    with pytest.raises(ValueError, match="max_workers"):
        SigningPool(edtech / "contexts", max_workers=-1)


_POOL_SCRIPT = """
import asyncio, sys
from pathlib import Path
from cayg_signing import SigningPool
from cayg_signing.pool import _worker_ready

async def main():
    pool = SigningPool(Path(sys.argv[1]), max_workers=2)
    await pool.start()
    loop = asyncio.get_running_loop()
    pids = {await loop.run_in_executor(pool._executor, _worker_ready) for _ in range(8)}
    print(" ".join(map(str, sorted(pids))), flush=True)
    await asyncio.sleep(3600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_workers_exit_when_the_service_is_killed_outright(edtech: Path, tmp_path: Path) -> None:
    script = tmp_path / "pool_owner.py"
    script.write_text(_POOL_SCRIPT)
    owner = subprocess.Popen(
        [sys.executable, str(script), str(edtech / "contexts")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        workers = [int(p) for p in owner.stdout.readline().split()]
        assert workers
        assert all(_alive(p) for p in workers)
        owner.kill()  # SIGKILL: the pool is never shut down
        owner.wait()
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "signing workers outlived their service"
    finally:
        owner.kill()
