"""The CLR 2.0 / Open Badges 3.0 resource-server stand-in.

Two APIs on one host: CLR 2.0 under ``/ims/clr/v2p0`` (ClrCredentials) and OB 3.0 under
``/ims/ob/v3p0`` (AchievementCredentials), sharing one OAuth 2.0 token endpoint
(``/oauth/token``). Choices where the standards leave room:

* Upserts take JSON only (``application/json``, ``application/ld+json``,
  ``application/vc+ld+json``); a compact JWS (``text/plain``) is answered 415 with
  ``imsx_codeMajor: unsupported``.
* Same credential = same ``issuer.id`` + ``id`` (per OAuth client). A credential whose
  ``validFrom`` is older than the stored one is NOT applied: the answer is 200 with the
  stored (newer) credential and ``X-Upsert-Outcome: stale_ignored``, and it is counted.
* ``since`` keeps credentials whose ``validFrom`` is after the given time.
* The list body uses the property names of the 1EdTech JSON Schemas (``credential``,
  ``compactJwsString``), which the prose examples of the specs spell differently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cayg_signing import (
    DEFAULT_VERIFICATION_CACHE_SIZE,
    ContextLoader,
    ResolvedKey,
    VerificationCache,
    fetch_json,
    resolve_key,
)
from cayg_standins.clr.checks import CLR, OB, ApiSpec, CredentialChecks, parse_datetime
from cayg_standins.clr.oauth import Clock, OAuthClient, TokenService
from cayg_standins.clr.store import ClrStore, TokenGrant
from cayg_standins.conformance import resolve_conformance_dir
from cayg_standins.faults import ADMIN_PREFIX, FaultInjector, FaultMiddleware, FaultPlan
from cayg_standins.web import (
    DEFAULT_MAX_BODY_BYTES,
    AccessLogMiddleware,
    AdminGuard,
    BodyLimitMiddleware,
    fault_admin_routes,
    json_response,
    log_context,
)

__all__ = ["ClrConfig", "create_clr_app", "imsx_error"]

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
AUTHORIZE_PATH = "/oauth/authorize"
JSON_TYPES = frozenset({"application/json", "application/ld+json", "application/vc+ld+json"})
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

_CODE_MINOR = {
    400: "invalid_data",
    401: "unauthorizedrequest",
    403: "forbidden",
    404: "not_found",
    405: "not_allowed",
    406: "not_acceptable",
    409: "invalid_data",
    413: "invalid_data",
    415: "invalid_data",
    429: "server_busy",
    500: "internal_server_error",
    502: "server_busy",
    503: "server_busy",
    504: "server_busy",
}


@dataclass(frozen=True)
class ClrConfig:
    """Settings of the CLR/OB host stand-in.

    Attributes:
        data_dir: directory of the SQLite state (kept across restarts).
        clients: OAuth clients (id -> client); a client without scopes may get them all.
        conformance_dir: the shared conformance data (default ``<repo>/../shared/conformance``).
        trusted_keys: verificationMethod -> raw Ed25519 public key, for proof checks.
            Other did:web and https verification methods are resolved from the issuer's
            hosted document (did:key ones from the DID itself).
        rewrites: URL prefix -> replacement used to fetch issuer documents (the local
            stack serves ``https://northfield.example/`` from loopback).
        token_ttl_s: access-token lifetime.
        refresh_ttl_s: refresh-token lifetime.
        public_base_url: base of URLs in discovery and Link headers (default: the request's).
        admin_token: opens ``/_admin`` (header ``X-Admin-Token``); ``None`` keeps it closed.
        faults: fault plan installed at start-up.
        max_body_bytes: larger request bodies are answered 413.
        verified_cache_size: credentials whose proofs verified, remembered so the same
            bytes are not verified again (0: verify every time).
    """

    data_dir: Path
    clients: Mapping[str, OAuthClient] = field(default_factory=dict)
    conformance_dir: Path | None = None
    trusted_keys: Mapping[str, bytes] = field(default_factory=dict)
    rewrites: Mapping[str, str] = field(default_factory=dict)
    token_ttl_s: int = 300
    refresh_ttl_s: int = 86_400
    public_base_url: str | None = None
    admin_token: str | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    verified_cache_size: int = DEFAULT_VERIFICATION_CACHE_SIZE

    def __post_init__(self) -> None:
        """Reject unusable settings early."""
        if self.token_ttl_s <= 0 or self.refresh_ttl_s <= 0:
            raise ValueError("token lifetimes must be positive")
        if self.verified_cache_size < 0:
            raise ValueError("verified_cache_size must be 0 (off) or positive")
        for key in self.trusted_keys.values():
            if len(key) != 32:
                raise ValueError("trusted keys are raw 32-byte Ed25519 public keys")


def imsx_error(status: int, description: str, minor: str | None = None) -> Response:
    """An ``Imsx_StatusInfo`` error body with the matching HTTP status."""
    major = "unsupported" if status in (405, 415) else "failure"
    body = {
        "imsx_codeMajor": major,
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_codeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": minor or _CODE_MINOR.get(status, "unknown"),
                }
            ]
        },
    }
    return json_response(body, status)


Handler = Callable[[Request, TokenGrant], Awaitable[Response]]


class _ResourceServer:
    """The endpoints of one API (CLR or OB) on the shared host."""

    def __init__(
        self,
        spec: ApiSpec,
        checks: CredentialChecks,
        store: ClrStore,
        tokens: TokenService,
        config: ClrConfig,
    ) -> None:
        self.spec = spec
        self.checks = checks
        self.store = store
        self.tokens = tokens
        self.config = config

    def base_url(self, request: Request) -> str:
        return self.config.public_base_url or f"{request.url.scheme}://{request.url.netloc}"

    def secured(
        self, scope_name: str, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """Require a live bearer token carrying this API's ``scope_name``."""
        required = self.spec.scope(scope_name)

        async def wrapper(request: Request) -> Response:
            grant = self.tokens.bearer(request)
            if isinstance(grant, tuple):
                status, description, challenge = grant
                response = imsx_error(status, description)
                response.headers["WWW-Authenticate"] = challenge
                return response
            log_context(request, client_id=grant.client_id)
            if required not in grant.scopes:
                response = imsx_error(403, f"the access token lacks the scope {required}")
                response.headers["WWW-Authenticate"] = (
                    f'Bearer realm="cayg-clr-standin", error="insufficient_scope", '
                    f'scope="{required}"'
                )
                return response
            return await handler(request, grant)

        return wrapper

    async def json_object(self, request: Request) -> dict[str, Any] | Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "text/plain":
            return imsx_error(
                415,
                "compact JWS (VC-JWT) credentials are not supported by this host: send the "
                "credential as JSON with an embedded DataIntegrityProof",
            )
        if content_type not in JSON_TYPES:
            return imsx_error(415, f"Content-Type must be one of {', '.join(sorted(JSON_TYPES))}")
        try:
            data = json.loads((await request.body()).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return imsx_error(400, f"the body is not valid JSON: {exc}")
        if not isinstance(data, dict):
            return imsx_error(400, "the body must be a JSON object")
        return data

    # -- credentials ----------------------------------------------------------------------

    async def upsert(self, request: Request, grant: TokenGrant) -> Response:
        credential = await self.json_object(request)
        if isinstance(credential, Response):
            return credential
        issuer = credential.get("issuer")
        raw_issuer = issuer.get("id") if isinstance(issuer, Mapping) else issuer
        issuer_id = raw_issuer if isinstance(raw_issuer, str) else None
        raw_id = credential.get("id")
        credential_id = raw_id if isinstance(raw_id, str) else None
        log_context(request, credential_id=credential_id)
        errors = self.checks.credential_errors(credential)
        if issuer_id is None or credential_id is None:
            errors.append("the credential needs an id and an issuer id to be upserted")
        valid_from_ts = 0.0
        valid_from = credential.get("validFrom")
        if not errors:
            try:
                valid_from_ts = parse_datetime(str(valid_from)).timestamp()
            except ValueError:
                errors.append(f"validFrom {valid_from!r} is not a date-time")
        if errors or issuer_id is None or credential_id is None:
            if issuer_id is not None and credential_id is not None:
                self.store.count_rejected(self.spec.api, issuer_id, credential_id)
            return imsx_error(400, "; ".join(errors))
        outcome = self.store.upsert(
            self.spec.api,
            client_id=grant.client_id,
            issuer_id=issuer_id,
            credential_id=credential_id,
            valid_from=str(valid_from),
            valid_from_ts=valid_from_ts,
            body=credential,
        )
        log_context(request, upsert=outcome.result)
        return json_response(
            outcome.stored.body,
            201 if outcome.result == "created" else 200,
            headers={"X-Upsert-Outcome": outcome.result},
        )

    async def list_credentials(self, request: Request, grant: TokenGrant) -> Response:
        params = request.query_params
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
            offset = int(params.get("offset", 0))
        except ValueError:
            return imsx_error(400, "limit and offset must be integers", "invalid_query_parameter")
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            return imsx_error(
                400,
                f"limit must be 1..{MAX_LIMIT} and offset must not be negative",
                "invalid_query_parameter",
            )
        since = params.get("since")
        since_ts: float | None = None
        if since is not None:
            try:
                since_ts = parse_datetime(since).timestamp()
            except ValueError:
                return imsx_error(400, "since must be a date-time", "invalid_query_parameter")
        total, page = self.store.page(self.spec.api, grant.client_id, since_ts, limit, offset)
        headers = {"X-Total-Count": str(total), "Link": self._links(request, limit, offset, total)}
        body = {"credential": page, "compactJwsString": []}
        return json_response(body, headers=headers)

    def _links(self, request: Request, limit: int, offset: int, total: int) -> str:
        base = f"{self.base_url(request)}{self.spec.base_path}/credentials"
        since = request.query_params.get("since")

        def link(at: int, rel: str) -> str:
            query: dict[str, str | int] = {"limit": limit, "offset": at}
            if since is not None:
                query["since"] = since
            return f'<{base}?{urlencode(query)}>; rel="{rel}"'

        last = ((total - 1) // limit) * limit if total else 0
        links = []
        if offset + limit < total:
            links.append(link(offset + limit, "next"))
        links.append(link(last, "last"))
        links.append(link(0, "first"))
        if offset > 0:
            links.append(link(max(0, offset - limit), "prev"))
        return ", ".join(links)

    # -- profile --------------------------------------------------------------------------

    async def get_profile(self, _request: Request, grant: TokenGrant) -> Response:
        profile = self.store.get_profile(self.spec.api, grant.client_id)
        if profile is None:
            return imsx_error(404, "no profile has been stored for this client yet")
        return json_response(profile)

    async def put_profile(self, request: Request, grant: TokenGrant) -> Response:
        profile = await self.json_object(request)
        if isinstance(profile, Response):
            return profile
        errors = self.checks.profile_schema.errors(profile)
        if errors:
            return imsx_error(400, f"{self.checks.profile_schema.name}: " + "; ".join(errors))
        self.store.put_profile(self.spec.api, grant.client_id, profile)
        return json_response(profile)

    # -- discovery ------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        base = self.base_url(request)
        scopes = {
            self.spec.scope("credential.readonly"): "Read the credentials of this client",
            self.spec.scope("credential.upsert"): "Create or replace credentials",
            self.spec.scope("profile.readonly"): "Read the profile",
            self.spec.scope("profile.update"): "Update the profile",
        }

        def operation(op_id: str, scope_name: str, summary: str) -> dict[str, Any]:
            return {
                "operationId": op_id,
                "summary": summary,
                "security": [
                    {"OAuth2ACG": [self.spec.scope(scope_name)]},
                    {"OAuth2CC": [self.spec.scope(scope_name)]},
                ],
                "responses": {"default": {"description": "see the specification"}},
            }

        flow = {
            "tokenUrl": f"{base}{TOKEN_PATH}",
            "refreshUrl": f"{base}{TOKEN_PATH}",
            "scopes": scopes,
        }
        document = {
            "openapi": "3.0.1",
            "info": {
                "title": self.spec.title,
                "version": "2.0" if self.spec.api == "clr" else "3.0",
                "termsOfService": f"{base}/terms",
                "x-imssf-privacyPolicyUrl": f"{base}/privacy",
            },
            "servers": [{"url": f"{base}{self.spec.base_path}"}],
            "tags": [{"name": "CredentialsApi"}, {"name": "DiscoveryApi"}],
            "paths": {
                "/credentials": {
                    "get": operation("getCredentials", "credential.readonly", "List credentials"),
                    "post": operation("upsertCredential", "credential.upsert", "Upsert"),
                },
                "/profile": {
                    "get": operation("getProfile", "profile.readonly", "Read the profile"),
                    "put": operation("putProfile", "profile.update", "Replace the profile"),
                },
                "/discovery": {
                    "get": {
                        "operationId": "getServiceDescription",
                        "summary": "This document",
                        "responses": {"200": {"description": "OpenAPI service description"}},
                    }
                },
            },
            "components": {
                "securitySchemes": {
                    "OAuth2ACG": {
                        "type": "oauth2",
                        "description": "OAuth 2.0 Authorization Code Grant (not offered by "
                        "this stand-in; listed for discovery clients)",
                        "flows": {
                            "authorizationCode": {
                                "authorizationUrl": f"{base}{AUTHORIZE_PATH}",
                                **flow,
                            }
                        },
                    },
                    "OAuth2CC": {
                        "type": "oauth2",
                        "description": "OAuth 2.0 Client Credentials Grant",
                        "flows": {"clientCredentials": flow},
                    },
                },
                "schemas": {},
            },
        }
        return json_response(document)

    def routes(self) -> list[BaseRoute]:
        base = self.spec.base_path
        return [
            Route(f"{base}/discovery", self.discovery, methods=["GET"]),
            Route(
                f"{base}/credentials",
                self.secured("credential.readonly", self.list_credentials),
                methods=["GET"],
            ),
            Route(
                f"{base}/credentials",
                self.secured("credential.upsert", self.upsert),
                methods=["POST"],
            ),
            Route(
                f"{base}/profile",
                self.secured("profile.readonly", self.get_profile),
                methods=["GET"],
            ),
            Route(
                f"{base}/profile",
                self.secured("profile.update", self.put_profile),
                methods=["PUT"],
            ),
        ]


#: How long a fetched issuer document (DID document, controller document) is reused.
ISSUER_DOCUMENT_TTL_S = 5.0


def create_clr_app(config: ClrConfig) -> Starlette:
    """Build the CLR/OB host stand-in (nothing is served until an ASGI server runs it)."""
    conformance_dir = resolve_conformance_dir(config.conformance_dir)
    loader = ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")
    schemas_dir = conformance_dir / "1edtech" / "schemas"
    # One cache for both APIs: the same trust map and contexts decide every proof.
    rewrites = dict(config.rewrites)
    # Issuer documents kept a few seconds: every upsert names the same few issuers, and a
    # rotated or removed key is still noticed quickly.
    documents: dict[str, tuple[float, Any]] = {}

    def fetch(url: str) -> Any:
        now = time.monotonic()
        cached = documents.get(url)
        if cached is not None and now - cached[0] < ISSUER_DOCUMENT_TTL_S:
            return cached[1]
        document = fetch_json(url, rewrite=rewrites, timeout_s=5)
        documents[url] = (now, document)
        return document

    def resolver(method: str) -> ResolvedKey:
        return resolve_key(method, fetch)

    proofs = VerificationCache(
        loader,
        trusted_keys=config.trusted_keys,
        maxsize=config.verified_cache_size,
        resolver=resolver,
    )
    store = ClrStore(config.data_dir)
    clock = Clock()
    all_scopes = frozenset(CLR.scopes) | frozenset(OB.scopes)
    for client in config.clients.values():
        unknown = client.scopes - all_scopes
        if unknown:
            raise ValueError(f"client {client.client_id}: unknown scopes {sorted(unknown)}")
    tokens = TokenService(
        config.clients,
        store,
        clock=clock,
        ttl_s=config.token_ttl_s,
        refresh_ttl_s=config.refresh_ttl_s,
        all_scopes=all_scopes,
    )
    servers = [
        _ResourceServer(
            spec,
            CredentialChecks(spec, schemas_dir, proofs),
            store,
            tokens,
            config,
        )
        for spec in (CLR, OB)
    ]
    injector = FaultInjector(config.faults)
    guard = AdminGuard(config.admin_token, imsx_error)

    async def authorize(_request: Request) -> Response:
        return json_response(
            {
                "error": "unsupported_response_type",
                "error_description": "this stand-in grants client_credentials and "
                "refresh_token only",
            },
            400,
        )

    async def stats(request: Request) -> Response:
        credential_id = request.query_params.get("credential_id")
        return json_response(
            {"upserts": store.upsert_counts(credential_id), "faults": injector.snapshot()}
        )

    async def show_clock(_request: Request) -> Response:
        return json_response({"offset_s": clock.offset_s, "now": clock.now()})

    async def move_clock(request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"{}")
            clock.offset_s += float(data["advance_s"])
        except (ValueError, KeyError, TypeError):
            return imsx_error(400, 'send {"advance_s": <seconds>}')
        return await show_clock(request)

    async def reset(_request: Request) -> Response:
        store.reset()
        return json_response({"reset": True})

    async def healthz(_request: Request) -> Response:
        return json_response({"status": "ok"})

    routes: list[BaseRoute] = [
        Route(TOKEN_PATH, tokens.token_endpoint, methods=["POST"]),
        Route(AUTHORIZE_PATH, authorize, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        *(route for server in servers for route in server.routes()),
        Route(f"{ADMIN_PREFIX}/stats", guard.guarded(stats), methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/clock", guard.guarded(show_clock), methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/clock", guard.guarded(move_clock), methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/reset", guard.guarded(reset), methods=["POST"]),
        *fault_admin_routes(injector, guard, imsx_error),
    ]

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = imsx_error(exc.status_code, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessLogMiddleware, service="clr-standin"),
            Middleware(
                BodyLimitMiddleware, max_bytes=config.max_body_bytes, render_error=imsx_error
            ),
            Middleware(FaultMiddleware, injector=injector, render_error=imsx_error),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.store = store
    app.state.faults = injector
    app.state.clock = clock
    return app
