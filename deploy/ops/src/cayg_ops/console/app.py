"""The console's web application (Starlette): pages, the replay action, and its own
``/healthz``. :func:`create_app` is the composition root; nothing connects at import."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from html import escape
from typing import Final
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cayg_ops import ledger_view
from cayg_ops.console import pages
from cayg_ops.console.data import STAGES, Sources
from cayg_ops.console.settings import ConsoleSettings
from cayg_ops.kafka_view import ParkedMessage
from cayg_publish.domain.projection import DocumentState
from cayg_shared.logging import get_logger
from cayg_shared.settings import ConnectionSettings

log = get_logger("cayg.console")

#: Largest form body the replay action reads (a user name and a password).
MAX_FORM_BYTES: Final = 4096
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text[:20]!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _since(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"since must be a date and time like 2025-06-01T08:00, not {text[:30]!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def create_app(settings: ConsoleSettings, connection: ConnectionSettings) -> Starlette:
    """The console for the cluster in ``connection`` and the services and ledger in
    ``settings``."""
    sources = Sources(settings, connection)

    async def health(request: Request) -> Response:  # noqa: ARG001 - Starlette signature
        return _html(pages.health(await sources.overview()))

    async def dlq(request: Request) -> Response:
        query = request.query_params
        filters = {k: query.get(k, "")[:200] for k in ("stage", "tenant", "reason", "since")}
        if filters["stage"] and filters["stage"] not in STAGES:
            return _html(
                pages.message("Dead letters", f"unknown stage {filters['stage']!r}", here="dlq"),
                400,
            )
        try:
            since = _since(filters["since"])
        except ValueError as error:
            return _html(pages.message("Dead letters", str(error), here="dlq"), 400)
        found = await sources.letters(
            stage=filters["stage"] or None,
            tenant=filters["tenant"] or None,
            reason=filters["reason"] or None,
            since=since,
        )
        tenants = sorted(
            set(sources.tenants())
            | {i.letter.tenant for _, i in found if i.letter and i.letter.tenant}
        )
        return _html(pages.letters(found, filters, tenants))

    async def letter(request: Request) -> Response:
        stage = request.path_params["stage"]
        try:
            partition = _int(request.path_params["partition"], "partition")
            offset = _int(request.path_params["offset"], "offset")
        except ValueError as error:
            return _html(pages.message("Dead letter", str(error), here="dlq"), 400)
        item = await sources.letter(stage, partition, offset)
        if item is None:
            return _html(
                pages.message(
                    "Dead letter", f"no dead letter {stage} {partition}:{offset}", here="dlq"
                ),
                404,
            )
        if request.method == "GET":
            return _html(pages.letter(stage, item, replay_enabled=settings.replay_enabled))
        return await _replay(request, stage, item)

    async def _replay(request: Request, stage: str, item: ParkedMessage) -> Response:
        if not settings.replay_enabled:
            return _html(
                pages.message(
                    "Replay",
                    "replay is disabled: no console credentials are configured",
                    here="dlq",
                ),
                403,
            )
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _html(pages.message("Replay", "the form is too large", here="dlq"), 413)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        user = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        basic = _basic(request)
        if basic is not None and not user:
            user, password = basic
        if not settings.accepts(user, password):
            log.warning("console replay refused: wrong credentials", stage=stage)
            return _html(
                pages.letter(
                    stage,
                    item,
                    replay_enabled=True,
                    outcome="<span class=bad>Wrong user or password: nothing was replayed.</span>",
                ),
                401,
            )
        why_not = item.unreplayable
        if why_not:
            return _html(
                pages.letter(
                    stage,
                    item,
                    replay_enabled=True,
                    outcome=f"<span class=bad>Not replayed: {escape(why_not)}</span>",
                ),
                409,
            )
        sent = await sources.replay(stage, item, by=user)
        where = ", ".join(escape(r.coordinates) for r in sent) or "nowhere"
        log.info(
            "console replay",
            user=user,
            stage=stage,
            letter=f"{item.partition}:{item.offset}",
            replayed_to=[r.coordinates for r in sent],
        )
        outcome = f"<span class=ok>Replayed</span> to {where}."
        return _html(pages.letter(stage, item, replay_enabled=True, outcome=outcome))

    async def published(request: Request) -> Response:
        query = request.query_params
        tenants = sources.tenants()
        filters = {k: query.get(k, "")[:200] for k in ("tenant", "state", "ctid", "learner")}
        if not filters["tenant"]:
            if tenants:
                filters["tenant"] = tenants[0]
            else:
                return _html(
                    pages.published(
                        [],
                        filters,
                        None,
                        "no publish targets file configured (CAYG_CONSOLE_TARGETS_FILE)",
                    )
                )
        try:
            states = [DocumentState(filters["state"])] if filters["state"] else None
            items = await sources.published(
                tenant=filters["tenant"],
                ctid=filters["ctid"] or None,
                learner=filters["learner"] or None,
                states=states,
            )
        except (ValueError, ledger_view.LedgerViewError) as error:
            return _html(pages.published(tenants, filters, [], str(error).splitlines()[0]), 400)
        return _html(pages.published(tenants, filters, items))

    async def healthz(request: Request) -> Response:  # noqa: ARG001
        return JSONResponse(
            {"status": "ok", "service": "console", "replay": settings.replay_enabled}
        )

    return Starlette(
        routes=[
            Route("/", health),
            Route("/dlq", dlq),
            Route("/dlq/{stage}/{partition}/{offset}", letter, methods=["GET"]),
            Route("/dlq/{stage}/{partition}/{offset}/replay", letter, methods=["POST"]),
            Route("/published", published),
            Route("/healthz", healthz),
        ]
    )
