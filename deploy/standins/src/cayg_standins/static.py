"""A static web host stand-in: the institutions' domains on loopback.

An institution hosts its DID document (``/.well-known/did.json``), or its https issuer's
controller document, and its OB issuer Profile on its own domain. Locally, one server
holds every domain: ``GET /<host>/<path>`` serves ``<root>/<host>/<path>`` — exactly the
tree ``cayg issuer export`` writes — and verifiers map ``https://<host>/`` to
``http://127.0.0.1:<port>/<host>/`` (:func:`cayg_signing.fetch_json`'s ``rewrite``).

A path that is a directory serves its ``index.json`` (an https issuer id such as
``https://host/issuers/cayg`` is a document at a path without a file name). Nothing
outside the root is ever served; only ``GET`` and ``HEAD``.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from cayg_standins.web import json_response

__all__ = ["StaticConfig", "create_static_app"]

INDEX = "index.json"


@dataclass(frozen=True)
class StaticConfig:
    """Settings of the static host stand-in: the directory it serves."""

    root: Path


def _media_type(path: Path) -> str:
    if path.suffix in ("", ".json", ".jsonld"):
        return "application/json"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def create_static_app(config: StaticConfig) -> Starlette:
    """Build the static host (nothing is served until an ASGI server runs it)."""
    root = config.root.resolve()

    async def serve(request: Request) -> Response:
        relative = request.path_params["path"]
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root):
            return json_response({"error": "not-found"}, 404)
        if candidate.is_dir():
            candidate = candidate / INDEX
        if not candidate.is_file():
            return json_response({"error": "not-found", "path": f"/{relative}"}, 404)
        return FileResponse(
            candidate, media_type=_media_type(candidate), headers={"cache-control": "no-cache"}
        )

    return Starlette(routes=[Route("/{path:path}", serve, methods=["GET", "HEAD"])])
