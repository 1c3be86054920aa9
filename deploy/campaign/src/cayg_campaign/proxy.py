"""A recording HTTP proxy between publish and one stand-in.

Every request is forwarded as it came; every write (any method but GET/HEAD) is recorded
as one JSON line: when, method, path, the resource it writes (a CTID or a credential id
found in the body), a hash of the body without its proofs (signatures and their
timestamps differ between two sends of the same content), the stand-in's status, and how
the exchange ended for publish:

* ``answered``: publish got the stand-in's answer;
* ``client-gone``: publish gave up (its read timeout) before the answer came: a timeout
  after the stand-in may have applied the write, so publish cannot know the outcome
  (``elapsed_s``, how long the stand-in took, tells an answer that came just as publish
  gave up);
* ``upstream-error``: the stand-in could not be reached (an outage): nothing was applied.

The proxy never writes a header or a body to its log: the records hold hashes only (the
campaign scans every log for secrets, this one included). The distinct ``Authorization``
values it saw go to a separate file (``--seen-credentials``) that the campaign reads to
know which bearer tokens must never appear in any log.

    python -m cayg_campaign.proxy --port 8401 --upstream http://127.0.0.1:8400 \\
        --record writes.jsonl --seen-credentials seen.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: Headers a proxy must not pass on (hop-by-hop) or that httpx sets itself.
_HOP: frozenset[str] = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)


def canonical_hash(body: bytes) -> str:
    """sha256 of a JSON body with every ``proof`` member removed (else of the raw bytes)."""
    try:
        document = json.loads(body)
    except ValueError:
        return hashlib.sha256(body).hexdigest()
    stripped = _without_proofs(document)
    return hashlib.sha256(json.dumps(stripped, sort_keys=True).encode()).hexdigest()


def _without_proofs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_proofs(v) for k, v in value.items() if k != "proof"}
    if isinstance(value, list):
        return [_without_proofs(v) for v in value]
    return value


def resource_of(path: str, body: bytes) -> str:
    """What a write changes: the shallowest CTID in the body (registry), the top-level
    ``id`` (a CLR credential), else the path."""
    try:
        document = json.loads(body)
    except ValueError:
        return path
    if isinstance(document, dict) and isinstance(document.get("id"), str):
        return str(document["id"])
    level: list[Any] = [document]
    while level:
        following: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key.lower().endswith("ctid") and isinstance(value, str):
                        return value
                    following.append(value)
            elif isinstance(node, list):
                following.extend(node)
        level = following
    return path


class Recorder:
    """Appends write records and remembers the credentials seen."""

    def __init__(self, record: Path, seen: Path) -> None:
        self._record: TextIO = record.open("a", encoding="utf-8")
        self._seen_path = seen
        self._seen: set[str] = set()

    def write(self, entry: dict[str, Any]) -> None:
        self._record.write(json.dumps(entry, sort_keys=True) + "\n")
        self._record.flush()

    def credential(self, value: str | None) -> str | None:
        """Remember ``value``; return its hash (what the records carry)."""
        if not value:
            return None
        if value not in self._seen:
            self._seen.add(value)
            with self._seen_path.open("a", encoding="utf-8") as out:
                out.write(value + "\n")
        return hashlib.sha256(value.encode()).hexdigest()[:16]


def create_proxy(upstream: str, recorder: Recorder) -> Starlette:
    """The proxy application forwarding to ``upstream``."""
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(120.0, connect=3.0))

    async def forward(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        write = request.method not in ("GET", "HEAD")
        credential = recorder.credential(request.headers.get("authorization")) if write else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        outgoing = client.build_request(
            request.method, path, params=request.url.query, headers=headers, content=body
        )
        started = time.time()
        task = asyncio.ensure_future(client.send(outgoing))
        outcome = "answered"
        upstream_response: httpx.Response | None = None
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=0.1)
                if not done and await request.is_disconnected():
                    outcome = "client-gone"
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                        await task
                    break
            if outcome == "answered":
                upstream_response = task.result()
        except httpx.HTTPError:
            outcome = "upstream-error"
        if write:
            recorder.write(
                {
                    "t": started,
                    "method": request.method,
                    "path": path,
                    "resource": resource_of(path, body),
                    "body": canonical_hash(body),
                    "status": upstream_response.status_code if upstream_response else None,
                    "outcome": outcome,
                    "credential": credential,
                    "elapsed_s": round(time.time() - started, 3),
                }
            )
        if upstream_response is None:
            return Response(status_code=502 if outcome == "upstream-error" else 499)
        reply_headers = {
            k: v for k, v in upstream_response.headers.items() if k.lower() not in _HOP
        }
        reply_headers.pop("content-encoding", None)
        return Response(
            upstream_response.content,
            status_code=upstream_response.status_code,
            headers=reply_headers,
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cayg_campaign.proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--seen-credentials", type=Path, required=True)
    args = parser.parse_args(argv)
    app = create_proxy(args.upstream, Recorder(args.record, args.seen_credentials))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
