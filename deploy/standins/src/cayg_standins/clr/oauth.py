"""The OAuth 2.0 side of the CLR host: token endpoint and bearer-token checks.

Grants: ``client_credentials`` (client authenticated by HTTP Basic or by ``client_id`` /
``client_secret`` form fields, never both) and ``refresh_token`` (refresh tokens are
single-use: each refresh revokes the one it used and issues a new pair). Errors follow
RFC 6749 section 5.2; bearer failures follow RFC 6750.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import Response

from cayg_standins.clr.store import ClrStore, TokenGrant
from cayg_standins.web import json_response

__all__ = ["Clock", "OAuthClient", "TokenService"]


class Clock:
    """Wall-clock time plus an adjustable offset, so tests can make tokens expire."""

    def __init__(self) -> None:
        """Start with no offset."""
        self.offset_s = 0.0

    def now(self) -> float:
        """Seconds since the epoch, shifted by the offset."""
        return time.time() + self.offset_s


@dataclass(frozen=True)
class OAuthClient:
    """A registered client: its secret and the scopes it may be granted."""

    client_id: str
    secret: str
    scopes: frozenset[str] = field(default_factory=frozenset)


def _oauth_error(status: int, error: str, description: str, basic: bool = False) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="cayg-clr-standin"'
    return json_response({"error": error, "error_description": description}, status, headers)


class TokenService:
    """Issues and checks tokens for the registered clients."""

    def __init__(
        self,
        clients: Mapping[str, OAuthClient],
        store: ClrStore,
        *,
        clock: Clock,
        ttl_s: int,
        refresh_ttl_s: int,
        all_scopes: frozenset[str],
    ) -> None:
        """``all_scopes`` is what a client with no explicit scope list may be granted."""
        self.clients = dict(clients)
        self.store = store
        self.clock = clock
        self.ttl_s = ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.all_scopes = all_scopes

    def _allowed(self, client: OAuthClient) -> frozenset[str]:
        return client.scopes or self.all_scopes

    def _authenticate(
        self, request: Request, form: Mapping[str, str]
    ) -> tuple[OAuthClient | None, Response | None]:
        header = request.headers.get("authorization", "")
        basic = header[:6].lower() == "basic "
        if basic and ("client_secret" in form or "client_id" in form):
            return None, _oauth_error(
                400, "invalid_request", "use one client authentication method, not two"
            )
        if basic:
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, _oauth_error(401, "invalid_client", "malformed Basic header", True)
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                return None, _oauth_error(401, "invalid_client", "malformed Basic header", True)
            client_id, secret = unquote(raw_id), unquote(raw_secret)
        else:
            client_id = form.get("client_id", "")
            secret = form.get("client_secret", "")
            if not client_id:
                return None, _oauth_error(401, "invalid_client", "client authentication failed")
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            return None, _oauth_error(401, "invalid_client", "client authentication failed", basic)
        return client, None

    async def token_endpoint(self, request: Request) -> Response:
        """``POST /oauth/token``."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        try:
            parsed = parse_qs((await request.body()).decode(), strict_parsing=False)
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "the body is not UTF-8")
        if any(len(values) > 1 for values in parsed.values()):
            return _oauth_error(400, "invalid_request", "a parameter was given more than once")
        form = {key: values[0] for key, values in parsed.items()}
        client, failure = self._authenticate(request, form)
        if failure is not None:
            return failure
        assert client is not None
        request.scope.setdefault("state", {}).setdefault("log", {})["client_id"] = client.client_id
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return self._client_credentials(client, form)
        if grant_type == "refresh_token":
            return self._refresh(client, form)
        if not grant_type:
            return _oauth_error(400, "invalid_request", "grant_type is required")
        return _oauth_error(
            400, "unsupported_grant_type", "use client_credentials or refresh_token"
        )

    @staticmethod
    def _requested(form: Mapping[str, str], ceiling: frozenset[str]) -> frozenset[str] | Response:
        raw = form.get("scope")
        requested = frozenset(raw.split()) if raw else ceiling
        if not requested or not requested <= ceiling:
            extra = " ".join(sorted(requested - ceiling)) or "(none)"
            return _oauth_error(400, "invalid_scope", f"scope not allowed for this client: {extra}")
        return requested

    def _client_credentials(self, client: OAuthClient, form: Mapping[str, str]) -> Response:
        scopes = self._requested(form, self._allowed(client))
        if isinstance(scopes, Response):
            return scopes
        return self._issue(client, scopes)

    def _refresh(self, client: OAuthClient, form: Mapping[str, str]) -> Response:
        token = form.get("refresh_token", "")
        if not token:
            return _oauth_error(400, "invalid_request", "refresh_token is required")
        grant = self.store.lookup(token, "refresh", self.clock.now())
        if grant is None or grant.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "the refresh token is invalid or expired")
        scopes = self._requested(form, grant.scopes & self._allowed(client))
        if isinstance(scopes, Response):
            return scopes
        self.store.revoke(token)
        return self._issue(client, scopes)

    def _issue(self, client: OAuthClient, scopes: frozenset[str]) -> Response:
        issued = self.store.issue(
            client.client_id, scopes, self.clock.now(), self.ttl_s, self.refresh_ttl_s
        )
        return json_response(
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "refresh_token": issued.refresh_token,
                "scope": " ".join(sorted(issued.scopes)),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def bearer(self, request: Request) -> TokenGrant | tuple[int, str, str]:
        """The grant of the request's bearer token, or (status, description, challenge)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            return 401, "a bearer access token is required", 'Bearer realm="cayg-clr-standin"'
        grant = self.store.lookup(token.strip(), "access", self.clock.now())
        if grant is None:
            return (
                401,
                "the access token is invalid or has expired",
                'Bearer realm="cayg-clr-standin", error="invalid_token"',
            )
        return grant
