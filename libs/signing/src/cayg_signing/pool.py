"""Signing off the event loop, in a pool of worker processes, behind a signature cache.

eddsa-rdfc-2022 signing is CPU work (JSON-LD expansion and RDF canonicalization in pure
Python take nearly all of it; the Ed25519 signature itself is microseconds). Run on the
event loop it stalls every consumer and HTTP client of the service; run in threads it
holds the GIL. :class:`SigningPool` sends it to worker processes instead, one per CPU by
default, and keeps the caller async::

    async with SigningPool(contexts_dir) as pool:
        signed = await pool.sign(credential, key)

Only plain data crosses the process boundary: the document as its canonical JSON text
(both ways), the key as its key-file object (multibase secret and public key,
verification method), ``created`` as a datetime. Each worker builds its
:class:`ContextLoader` once, in the pool's initializer, from the same contexts directory
(checked against the pins there too).

The :class:`SignatureCache` sits in front: a document the same key already signed is
served from the parent process without a round trip (see :mod:`cayg_signing.cache` for
the key and for how ``created`` is treated). ``max_workers=0`` signs inline, in the
calling thread, for tests and tiny deployments.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing.context import BaseContext
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from .cache import SignatureCache, canonical_json, key_of_canonical, signature_cache_key
from .contexts import ContextLoader
from .keys import SigningKey
from .proof import sign_credential, sign_parsed

__all__ = ["SigningPool"]

# Per worker process: the loader built by the initializer, and keys already parsed (a
# service signs with a handful of issuer keys; parsing one re-derives its public key).
_worker_loader: ContextLoader | None = None
_worker_keys: dict[tuple[tuple[str, str], ...], SigningKey] = {}
_WORKER_KEYS_MAX: Final = 64


def _init_worker(contexts_dir: str, nice: int = 0) -> None:
    """Pool initializer: lower this process's CPU priority by ``nice``, then build its
    context loader once."""
    global _worker_loader  # noqa: PLW0603 -- one loader per worker process, by design
    # Ctrl-C goes to the whole process group; the parent shuts the pool down, so workers
    # must not die mid-task with a KeyboardInterrupt traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    starter = multiprocessing.parent_process()
    _exit_with_parent(starter.pid if starter is not None and starter.pid else os.getppid())
    if nice > 0:
        # Only ever lowered, which needs no privilege.
        os.nice(nice)
    _worker_loader = ContextLoader.from_directory(Path(contexts_dir))


#: How often a worker checks that the process that started it is still there.
_PARENT_CHECK_S: Final = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this worker once ``parent`` is gone.

    A service killed outright (SIGKILL, OOM) never shuts its pool down, and a worker
    waits on its task queue forever: the queue's own write end, which the worker holds
    too, keeps the pipe open. When the parent dies the worker is re-parented, so a daemon
    thread watches ``getppid()`` and exits the process when it changes.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="cayg-signing-parent-watch", daemon=True).start()


def _worker_ready() -> int:
    """A no-op task that proves the initializer ran; returns the worker's pid."""
    if _worker_loader is None:
        raise RuntimeError("signing worker started without its context loader")
    return os.getpid()


def _worker_key(key_file: Mapping[str, str]) -> SigningKey:
    cache_key = tuple(sorted(key_file.items()))
    key = _worker_keys.get(cache_key)
    if key is None:
        if len(_worker_keys) >= _WORKER_KEYS_MAX:
            _worker_keys.clear()
        key = _worker_keys[cache_key] = SigningKey.from_json(key_file)
    return key


def _sign_in_worker(document_json: str, key_file: dict[str, str], created: datetime | None) -> str:
    """The task run in a worker: sign the document (canonical JSON text) with the key
    ``key_file`` describes; the result as canonical JSON text.

    Text both ways: the parent has the canonical text already (its cache key) and stores
    the result as text, so the event loop's process only parses the answer once.
    """
    if _worker_loader is None:
        raise RuntimeError("signing worker started without its context loader")
    document = json.loads(document_json)
    signed = sign_parsed(document, _worker_key(key_file), _worker_loader, created=created)
    return canonical_json(signed).decode("utf-8")


#: What signing a credential with embedded ones returns: each newly signed embedded
#: credential's canonical JSON (in the order asked for), the outer document's cache key,
#: and the signed outer document's canonical JSON.
EmbeddedSigned = tuple[list[str], str, str]


def _sign_embedded(
    document: dict[str, Any],
    unsigned: Sequence[int],
    key: SigningKey,
    loader: ContextLoader,
    created: datetime | None,
) -> EmbeddedSigned:
    """Sign the embedded credentials at ``unsigned`` (indexes into
    ``credentialSubject.verifiableCredential``) of ``document``, just parsed and held by
    the caller alone, put them in place, then sign ``document`` itself."""
    items = document["credentialSubject"]["verifiableCredential"]
    texts = []
    for index in unsigned:
        signed = sign_parsed(items[index], key, loader, created=created)
        items[index] = signed
        texts.append(canonical_json(signed).decode("utf-8"))
    cache_key = signature_cache_key(
        document,
        verification_method=key.verification_method,
        public_key=key.public_key,
        created=created,
    )
    outer = sign_parsed(document, key, loader, created=created)
    return texts, cache_key, canonical_json(outer).decode("utf-8")


def _sign_embedded_in_worker(
    document_json: str,
    unsigned: list[int],
    key_file: dict[str, str],
    created: datetime | None,
) -> EmbeddedSigned:
    """The task run in a worker for :meth:`SigningPool.sign_with_embedded`: a CLR and the
    AchievementCredentials it needs signed go in one round trip, not one per credential."""
    if _worker_loader is None:
        raise RuntimeError("signing worker started without its context loader")
    document = json.loads(document_json)
    return _sign_embedded(document, unsigned, _worker_key(key_file), _worker_loader, created)


class SigningPool:
    """Signs credentials in worker processes (or inline), with a :class:`SignatureCache`
    in front.

    Use one pool per process for the whole service life: ``await start()`` (or ``async
    with``) at start-up, ``await aclose()`` at shutdown.
    """

    def __init__(
        self,
        contexts_dir: Path,
        *,
        max_workers: int | None = None,
        cache: SignatureCache | None = None,
        mp_context: BaseContext | None = None,
        worker_nice: int = 0,
    ) -> None:
        """Prepare the pool; worker processes start on first use (or in :meth:`start`).

        Args:
            contexts_dir: the pinned JSON-LD contexts (see :meth:`ContextLoader.from_directory`).
            max_workers: worker processes; ``None`` = ``os.cpu_count()``; ``0`` = sign
                inline in the calling thread (blocking it).
            cache: the signature cache to use; a default-sized one when omitted.
            mp_context: how workers start; ``spawn`` by default, because forking a
                process that runs other threads (database drivers, the event loop's
                executor) can copy a held lock into the child and deadlock it.
            worker_nice: how much lower than this process the workers run (0-19, like
                ``nice``): signing is bulk work, and on a shared machine the consume
                paths of this and other services should not queue behind it. Workers
                still take all the CPU nothing else wants.

        Raises:
            ContextError: the contexts directory is unusable (checked here, before any
                worker starts).
            ValueError: ``max_workers`` is negative, or ``worker_nice`` outside 0-19.
        """
        workers = (os.cpu_count() or 1) if max_workers is None else max_workers
        if workers < 0:
            raise ValueError("max_workers must be 0 (inline) or positive")
        if not 0 <= worker_nice <= 19:
            raise ValueError("worker_nice must be between 0 and 19")
        # Loaded in the parent too: it validates the directory up front, and it is what
        # inline mode signs with.
        self._loader = ContextLoader.from_directory(contexts_dir)
        self._cache = cache if cache is not None else SignatureCache()
        self._max_workers = workers
        self._closed = False
        self._executor: ProcessPoolExecutor | None = None
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=mp_context or multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(Path(contexts_dir).resolve()), worker_nice),
            )

    @property
    def max_workers(self) -> int:
        """Worker processes (0: inline)."""
        return self._max_workers

    @property
    def cache(self) -> SignatureCache:
        """The signature cache in front of the workers."""
        return self._cache

    async def start(self) -> None:
        """Start the workers now (one task per worker) and wait until they have their
        context loaders, so a broken installation fails at start-up, not on the first
        credential.

        Raises:
            concurrent.futures.process.BrokenProcessPool: a worker could not start.
        """
        self._check_open()
        if self._executor is None:
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _worker_ready) for _ in range(self._max_workers))
        )

    async def sign(
        self,
        credential: Mapping[str, Any],
        key: SigningKey,
        *,
        created: datetime | None = None,
    ) -> dict[str, Any]:
        """The credential with its eddsa-rdfc-2022 proof (see :func:`sign_credential`),
        from the cache when the same key already signed the same content.

        Raises:
            SigningError: the credential cannot be signed (e.g. ``UndefinedTermError``).
            RuntimeError: the pool is closed.
        """
        self._check_open()
        canonical = canonical_json(credential)
        cache_key = key_of_canonical(
            canonical,
            verification_method=key.verification_method,
            public_key=key.public_key,
            created=created,
        )
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        if self._executor is None:
            signed = sign_credential(credential, key, self._loader, created=created)
            # The cache keeps its own (text) copy, so the caller may change ``signed``.
            self._cache.put(cache_key, signed)
            return signed
        loop = asyncio.get_running_loop()
        signed_json = await loop.run_in_executor(
            self._executor, _sign_in_worker, canonical.decode("utf-8"), key.to_json(), created
        )
        self._cache.put_json(cache_key, signed_json)
        result: dict[str, Any] = json.loads(signed_json)
        return result

    async def sign_all(
        self,
        credentials: Iterable[Mapping[str, Any]],
        key: SigningKey,
        *,
        created: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Sign several credentials concurrently (spread over the workers), in order."""
        return list(
            await asyncio.gather(*(self.sign(c, key, created=created) for c in credentials))
        )

    async def sign_with_embedded(
        self,
        credential: Mapping[str, Any],
        key: SigningKey,
        *,
        created: datetime | None = None,
    ) -> dict[str, Any]:
        """Sign the credentials embedded in ``credentialSubject.verifiableCredential``
        that have no proof yet (a ClrCredential's AchievementCredentials), then the
        credential around them, whose proof then covers theirs.

        Embedded credentials are where the cache pays: one whose content did not change
        is served as it was signed before. Those that must be signed go to one worker
        together with the credential around them, in a single round trip: each hand-over
        costs this process CPU (about 0.4 ms per credential when each went on its own,
        measured on CLRs of five awards; see the package README).

        Raises:
            SigningError: a credential cannot be signed (e.g. ``UndefinedTermError``).
            RuntimeError: the pool is closed.
        """
        subject = credential.get("credentialSubject")
        embedded = subject.get("verifiableCredential") if isinstance(subject, Mapping) else None
        if not isinstance(subject, Mapping) or not isinstance(embedded, list):
            return await self.sign(credential, key, created=created)
        self._check_open()
        items = list(embedded)
        unsigned: list[int] = []
        item_keys: list[str] = []
        for index, item in enumerate(embedded):
            if not isinstance(item, Mapping) or "proof" in item:
                continue
            item_key = signature_cache_key(
                item,
                verification_method=key.verification_method,
                public_key=key.public_key,
                created=created,
            )
            cached = self._cache.get(item_key)
            if cached is None:
                unsigned.append(index)
                item_keys.append(item_key)
            else:
                items[index] = cached
        outer = {**credential, "credentialSubject": {**subject, "verifiableCredential": items}}
        if not unsigned:
            return await self.sign(outer, key, created=created)
        document_json = canonical_json(outer).decode("utf-8")
        if self._executor is None:
            texts, outer_key, signed_json = _sign_embedded(
                json.loads(document_json), unsigned, key, self._loader, created
            )
        else:
            loop = asyncio.get_running_loop()
            texts, outer_key, signed_json = await loop.run_in_executor(
                self._executor,
                _sign_embedded_in_worker,
                document_json,
                unsigned,
                key.to_json(),
                created,
            )
        for item_key, text in zip(item_keys, texts, strict=True):
            self._cache.put_json(item_key, text)
        # Looked up like any signing (and counted as a miss): the same content signed
        # meanwhile by another call is served as it was stored first.
        earlier = self._cache.get(outer_key)
        if earlier is not None:
            return earlier
        self._cache.put_json(outer_key, signed_json)
        result: dict[str, Any] = json.loads(signed_json)
        return result

    async def aclose(self) -> None:
        """Stop the workers: queued signing is cancelled, running tasks are waited for.

        The wait happens in a thread, so the event loop keeps running meanwhile.
        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    def close(self) -> None:
        """:meth:`aclose` for code without an event loop (blocks until workers exit)."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> SigningPool:
        """Start the workers (see :meth:`start`)."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Shut the workers down (see :meth:`aclose`)."""
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the signing pool is closed")

    def __repr__(self) -> str:
        return f"SigningPool(max_workers={self._max_workers}, cache={self._cache.stats})"
