"""1EdTech CLR 2.0 / Open Badges 3.0 REST API: client and :class:`~cayg_publish.domain.Target`.

* ``GET <base>/discovery`` (unauthenticated OpenAPI service description) gives the OAuth
  token URL (``components.securitySchemes.*.flows.{clientCredentials|authorizationCode}``;
  relative URLs resolve against the discovery URL). ``token_url`` in the configuration
  overrides it.
* Tokens: OAuth 2.0 client-credentials grant (client authenticated with HTTP Basic, RFC 6749
  §2.3.1); cached until ``refresh_margin`` before expiry, then renewed with the
  refresh-token grant when the server issued a refresh token (falling back to client
  credentials if the refresh is refused). One renewal at a time.
* ``POST <base>/credentials`` upserts (200 replaced, 201 created). A 401 drops the cached
  token and the request is retried once with a brand-new one. Errors carry
  ``Imsx_StatusInfo`` bodies, whose description and code-minor values become the failure's
  messages; ``Retry-After`` is honoured.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self, cast
from urllib.parse import urljoin

import httpx
from pydantic import SecretStr

from cayg_publish.adapters._http import (
    body_excerpt,
    error_response_failure,
    failure_from_exception,
    new_client,
    response_record,
)
from cayg_publish.config import ClrTargetConfig
from cayg_publish.domain.catalog import (
    Applied,
    DocumentRenderer,
    ReadBack,
    Rendering,
    TargetFailure,
    TargetLimits,
)
from cayg_publish.domain.idempotency import IDEMPOTENCY_HEADER
from cayg_publish.domain.projection import DocumentKind, DocumentRef
from cayg_publish.domain.retry import (
    Failure,
    FailureKind,
    TransportError,
    permanent_failure,
    transport_failure,
)

CREDENTIALS_PATH: Final = "credentials"
#: Signed bodies kept for retries (one per delivery in flight is enough).
_SIGNED_CACHE: Final = 256
DISCOVERY_PATH: Final = "discovery"
#: OAuth error codes that a retry with the same client cannot fix (RFC 6749 §5.2).
_PERMANENT_OAUTH_ERRORS: Final = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type"}
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def imsx_messages(body: Any) -> tuple[str, ...]:
    """Messages of an ``Imsx_StatusInfo`` body: description, then code-minor values."""
    if not isinstance(body, Mapping):
        return ()
    messages: list[str] = []
    description = body.get("imsx_description")
    if isinstance(description, str) and description:
        messages.append(description)
    elif isinstance(description, Mapping):
        messages.extend(str(v) for v in description.values() if v)
    minor = body.get("imsx_codeMinor")
    fields = minor.get("imsx_codeMinorField") if isinstance(minor, Mapping) else None
    if isinstance(fields, Mapping):
        fields = [fields]
    if isinstance(fields, list):
        for field in fields:
            if isinstance(field, Mapping) and field.get("imsx_codeMinorFieldValue"):
                name = field.get("imsx_codeMinorFieldName") or "codeMinor"
                messages.append(f"{name}: {field['imsx_codeMinorFieldValue']}")
    if not messages and isinstance(body.get("imsx_codeMajor"), str):
        messages.append(f"imsx_codeMajor: {body['imsx_codeMajor']}")
    return tuple(messages)


@dataclass(frozen=True, slots=True)
class OAuthEndpoints:
    """Where to get tokens, from the service description or the configuration."""

    token_url: str
    refresh_url: str | None = None
    scopes: tuple[str, ...] = ()


def endpoints_from_discovery(document: Any, discovery_url: str) -> OAuthEndpoints | None:
    """The OAuth endpoints of a CLR/OB service description document, if it names any.

    Prefers a ``clientCredentials`` flow (what a server-to-server publisher uses) and
    falls back to the ``authorizationCode`` flow's token URL, which the 1EdTech documents
    always carry.
    """
    components = document.get("components") if isinstance(document, Mapping) else None
    schemes = components.get("securitySchemes") if isinstance(components, Mapping) else None
    if not isinstance(schemes, Mapping):
        return None
    for flow_name in ("clientCredentials", "authorizationCode"):
        for scheme in schemes.values():
            if not isinstance(scheme, Mapping) or scheme.get("type") != "oauth2":
                continue
            flows = scheme.get("flows")
            flow = flows.get(flow_name) if isinstance(flows, Mapping) else None
            if not isinstance(flow, Mapping) or not isinstance(flow.get("tokenUrl"), str):
                continue
            refresh = flow.get("refreshUrl")
            scopes = flow.get("scopes")
            return OAuthEndpoints(
                token_url=urljoin(discovery_url, flow["tokenUrl"]),
                refresh_url=urljoin(discovery_url, refresh) if isinstance(refresh, str) else None,
                scopes=tuple(scopes) if isinstance(scopes, Mapping) else (),
            )
    return None


@dataclass(frozen=True, slots=True)
class _Token:
    access: SecretStr
    refresh: SecretStr | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """The host's answer to ``POST /credentials``."""

    status: int
    #: True for 201 Created, False for 200 (an existing credential was replaced).
    created: bool
    body: Any


class ClrClient:
    """A client of one CLR 2.0 / OB 3.0 host, authenticated as one OAuth client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: SecretStr,
        scopes: tuple[str, ...],
        token_url: str | None = None,
        refresh_margin: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = scopes
        self._endpoints = OAuthEndpoints(token_url) if token_url else None
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ClrClient(base_url={str(self._http.base_url)!r}, client_id={self._client_id!r})"

    @classmethod
    def from_config(
        cls,
        config: ClrTargetConfig,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> Self:
        """A client for ``config``, resolving its client secret (file or environment)."""
        return cls(
            new_client(str(config.base_url), config.timeouts, transport=transport),
            client_id=config.client_id,
            client_secret=config.client_secret.resolve(environ),
            scopes=config.effective_scopes,
            token_url=str(config.token_url) if config.token_url else None,
            refresh_margin=timedelta(seconds=config.refresh_margin_seconds),
            clock=clock,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    # -- discovery and tokens --------------------------------------------------------------

    async def discover(self) -> OAuthEndpoints:
        """The OAuth endpoints (configured, or read once from ``GET /discovery``)."""
        if self._endpoints is not None:
            return self._endpoints
        try:
            response = await self._http.get(DISCOVERY_PATH)
        except httpx.HTTPError as exc:
            raise TargetFailure(failure_from_exception(exc)) from exc
        if response.status_code != 200:
            raise TargetFailure(
                error_response_failure(
                    response, self._clock(), messages_of=imsx_messages, what="CLR discovery"
                )
            )
        endpoints = endpoints_from_discovery(body_excerpt(response), str(response.url))
        if endpoints is None:
            raise TargetFailure(
                permanent_failure(
                    "discovery-invalid",
                    "the service description names no OAuth 2.0 token URL",
                    status=response.status_code,
                    response=response_record(response),
                )
            )
        self._endpoints = endpoints
        return endpoints

    async def access_token(self, *, fresh: bool = False) -> SecretStr:
        """A valid access token: cached, refreshed before expiry, or newly granted.

        ``fresh`` discards the cached token (after a 401) and asks for a new grant.
        """
        stale = self._token if fresh else None
        async with self._token_lock:
            token = self._token
            if token is not None and token is not stale and self._usable(token):
                return token.access
            endpoints = await self.discover()
            new: _Token | None = None
            if token is not None and token is not stale and token.refresh is not None:
                new = await self._refresh(endpoints, token.refresh)
            if new is None:
                new = await self._grant(
                    endpoints.token_url,
                    {"grant_type": "client_credentials", "scope": " ".join(self._scopes)},
                )
            self._token = new
            return new.access

    def _usable(self, token: _Token) -> bool:
        if token.expires_at is None:
            return True
        return self._clock() < token.expires_at - self._refresh_margin

    async def _refresh(self, endpoints: OAuthEndpoints, refresh: SecretStr) -> _Token | None:
        try:
            return await self._grant(
                endpoints.refresh_url or endpoints.token_url,
                {"grant_type": "refresh_token", "refresh_token": refresh.get_secret_value()},
            )
        except TargetFailure as exc:
            if exc.failure.retryable:
                raise
            # The refresh token was refused (expired, revoked): start over with the
            # client's own credentials.
            return None

    async def _grant(self, token_url: str, form: dict[str, str]) -> _Token:
        try:
            response = await self._http.post(
                token_url,
                data=form,
                auth=(self._client_id, self._client_secret.get_secret_value()),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise TargetFailure(failure_from_exception(exc)) from exc
        body = body_excerpt(response)
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, Mapping) else None
            failure = error_response_failure(
                response, self._clock(), messages_of=_oauth_messages, what="the token endpoint"
            )
            if error in _PERMANENT_OAUTH_ERRORS or (
                response.status_code in (400, 401) and error != "temporarily_unavailable"
            ):
                raise TargetFailure(
                    permanent_failure(
                        f"oauth-{error or response.status_code}",
                        failure.detail,
                        status=response.status_code,
                        messages=failure.messages,
                    )
                )
            raise TargetFailure(failure)
        if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
            raise TargetFailure(
                transport_failure(
                    TransportError.PROTOCOL, "the token endpoint sent no access_token"
                )
            )
        expires_in = body.get("expires_in")
        expires_at = (
            self._clock() + timedelta(seconds=float(expires_in))
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else None
        )
        refresh = body.get("refresh_token")
        return _Token(
            access=SecretStr(body["access_token"]),
            refresh=SecretStr(refresh) if isinstance(refresh, str) and refresh else None,
            expires_at=expires_at,
        )

    # -- credentials -----------------------------------------------------------------------

    async def upsert_credential(
        self, credential: Mapping[str, Any] | str, idempotency_key: str
    ) -> UpsertResult:
        """``POST /credentials``: a signed credential as JSON, or a compact JWS as text."""
        response = await self._post_credential(credential, idempotency_key, fresh_token=False)
        if response.status_code == 401:
            # The token may have been revoked or expired early: one retry with a new one.
            response = await self._post_credential(credential, idempotency_key, fresh_token=True)
        if response.status_code in (200, 201):
            return UpsertResult(
                response.status_code, response.status_code == 201, body_excerpt(response)
            )
        failure = error_response_failure(
            response, self._clock(), messages_of=imsx_messages, what="the CLR host"
        )
        if response.status_code == 401:
            failure = Failure(
                kind=FailureKind.PERMANENT,
                reason="unauthorized",
                detail=failure.detail + " (also with a new token)",
                status=401,
                messages=failure.messages,
                response=failure.response,
            )
        raise TargetFailure(failure)

    async def held_credentials(self, page_size: int = 100) -> dict[str, dict[str, Any]]:
        """Every credential the host holds for this client, by id (``GET /credentials``,
        paged with ``limit``/``offset`` and ``X-Total-Count``); for reconciliation."""
        held: dict[str, dict[str, Any]] = {}
        offset = 0
        # Reading needs the API's readonly scope, which delivery never asks for.
        readonly = [
            scope.replace("credential.upsert", "credential.readonly")
            for scope in self._scopes
            if scope.endswith("credential.upsert")
        ]
        endpoints = await self.discover()
        grant = await self._grant(
            endpoints.token_url,
            {"grant_type": "client_credentials", "scope": " ".join(readonly or self._scopes)},
        )
        token = grant.access
        while True:
            try:
                response = await self._http.get(
                    CREDENTIALS_PATH,
                    params={"limit": page_size, "offset": offset},
                    headers={"Authorization": f"Bearer {token.get_secret_value()}"},
                )
            except httpx.HTTPError as exc:
                raise TargetFailure(failure_from_exception(exc)) from exc
            if response.status_code != 200:
                raise TargetFailure(
                    error_response_failure(
                        response, self._clock(), messages_of=imsx_messages, what="the CLR host"
                    )
                )
            page = response.json().get("credential") or []
            for item in page:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    held[item["id"]] = item
            offset += len(page)
            total = int(response.headers.get("X-Total-Count", offset))
            if not page or offset >= total:
                return held

    async def _post_credential(
        self, credential: Mapping[str, Any] | str, idempotency_key: str, *, fresh_token: bool
    ) -> httpx.Response:
        token = await self.access_token(fresh=fresh_token)
        headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            IDEMPOTENCY_HEADER: idempotency_key,
        }
        try:
            if isinstance(credential, str):
                headers["Content-Type"] = "text/plain"
                return await self._http.post(CREDENTIALS_PATH, content=credential, headers=headers)
            return await self._http.post(CREDENTIALS_PATH, json=dict(credential), headers=headers)
        except httpx.HTTPError as exc:
            raise TargetFailure(failure_from_exception(exc)) from exc


def _oauth_messages(body: Any) -> tuple[str, ...]:
    if not isinstance(body, Mapping):
        return ()
    parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
    return tuple(parts)


#: Signs an unsigned rendering body (CPU-bound; run in a worker thread).
Signer = Callable[[Mapping[str, Any]], dict[str, Any]]
#: Signs off the event loop (a :class:`cayg_signing.SigningPool`): preferred.
AsyncSigner = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def _as_async(signer: Signer | AsyncSigner) -> AsyncSigner:
    """An async signer: a pool's as it is, a blocking one run in a worker thread."""
    if inspect.iscoroutinefunction(signer):
        return cast(AsyncSigner, signer)
    blocking = cast(Signer, signer)

    async def in_thread(body: Mapping[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(blocking, body)

    return in_thread


class ClrTarget:
    """Delivers learners' signed credentials to one CLR 2.0 / OB 3.0 host."""

    def __init__(
        self,
        name: str,
        client: ClrClient,
        renderer: DocumentRenderer,
        signer: Signer | AsyncSigner,
        *,
        limits: TargetLimits | None = None,
    ) -> None:
        self._name = name
        self._client = client
        self._renderer = renderer
        self._sign = _as_async(signer)
        self._limits = limits or TargetLimits()
        # Signed bodies by idempotency key: the retries of one delivery resend the very
        # same bytes (a host compares bodies; a fresh proof timestamp would differ).
        self._signed: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __repr__(self) -> str:
        return f"ClrTarget(name={self._name!r})"

    @property
    def name(self) -> str:
        """The target's configured name."""
        return self._name

    @property
    def limits(self) -> TargetLimits:
        """Concurrency and rate limits."""
        return self._limits

    @property
    def document_kinds(self) -> frozenset[DocumentKind]:
        """Learners' records (CLR) or awards' credentials (OB)."""
        return self._renderer.document_kinds

    async def render_document(self, ref: DocumentRef) -> Sequence[Rendering]:
        """The unsigned credential(s) that bring ``ref`` up to date."""
        return await self._renderer.document(ref)

    async def apply(self, rendering: Rendering, idempotency_key: str) -> Applied:
        """Sign the rendering and upsert it; raises :class:`TargetFailure`."""
        signed = self._signed.get(idempotency_key)
        if signed is None:
            try:
                signed = await self._sign(rendering.body)
            except ValueError as exc:
                # Signing refuses undefined terms or bad input: retrying cannot help.
                raise TargetFailure(permanent_failure("signing", str(exc)[:500])) from exc
            self._signed[idempotency_key] = signed
            while len(self._signed) > _SIGNED_CACHE:
                self._signed.popitem(last=False)
        result = await self._client.upsert_credential(signed, idempotency_key)
        return Applied(
            remote_id=rendering.remote_id,
            changed=True,
            status=result.status,
        )

    async def read_back(self) -> ReadBack:
        """A check of what the host holds against renderings (read once, all of it).

        The check answers None when the host holds exactly the rendering's content (proofs
        aside: a re-signature is not drift), else what differs.
        """
        held: dict[str, dict[str, Any]] = {}
        listed = False

        async def check(rendering: Rendering, remote_url: str | None) -> str | None:
            nonlocal held, listed
            del remote_url  # the host lists credentials by id
            if not listed:  # once, and only when something is to be compared
                held, listed = await self._client.held_credentials(), True
            stored = held.get(rendering.remote_id or "")
            if stored is None:
                return None if rendering.replaces_only else "missing at the host"
            if without_proofs(stored) != json.loads(json.dumps(rendering.body)):
                return "the host holds other content"
            return None

        return check

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()


def without_proofs(credential: Mapping[str, Any]) -> dict[str, Any]:
    """A signed credential as it was before signing: its proof and the proofs of the
    credentials embedded in it removed."""
    unsigned = {k: v for k, v in credential.items() if k != "proof"}
    subject = unsigned.get("credentialSubject")
    if isinstance(subject, Mapping) and isinstance(subject.get("verifiableCredential"), list):
        unsigned["credentialSubject"] = {
            **subject,
            "verifiableCredential": [
                without_proofs(c) if isinstance(c, Mapping) else c
                for c in subject["verifiableCredential"]
            ],
        }
    return unsigned
