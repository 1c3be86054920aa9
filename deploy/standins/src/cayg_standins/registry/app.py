"""The Registry Assistant API stand-in (a strict subset of the Credential Engine API).

Publishing endpoints live under the configurable base path (default ``/assistant/``);
read-back endpoints mirror the registry's own URLs (``/resources/{ctid}``,
``/graph/{ctid}``, ``/envelopes/{id}``) plus a listing per organization.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cayg_standins.conformance import resolve_conformance_dir
from cayg_standins.faults import ADMIN_PREFIX, FaultInjector, FaultMiddleware, FaultPlan
from cayg_standins.registry.render import Kind, RegistryRules, RegistryUrls, Rendered
from cayg_standins.registry.store import RegistryStore, StoredResource
from cayg_standins.registry.vocab import CTDL_CONTEXT, CTID_PATTERN
from cayg_standins.web import (
    DEFAULT_MAX_BODY_BYTES,
    AccessLogMiddleware,
    AdminGuard,
    BodyLimitMiddleware,
    fault_admin_routes,
    json_response,
    log_context,
)

__all__ = ["RegistryConfig", "create_registry_app"]

API_KEY_LENGTH = 36


@dataclass(frozen=True)
class RegistryConfig:
    """Settings of the registry stand-in.

    Attributes:
        data_dir: directory of the SQLite state (kept across restarts).
        api_keys: API key -> CTIDs of the organizations it may publish for.
        conformance_dir: the shared conformance data (default ``<repo>/../shared/conformance``).
        base_path: where the Assistant endpoints live.
        public_base_url: base of the resource/graph/envelope URLs (default: the request's).
        admin_token: opens ``/_admin`` (header ``X-Admin-Token``); ``None`` keeps it closed.
        faults: fault plan installed at start-up.
        max_body_bytes: larger request bodies are answered 413.
        registered_elsewhere: organization CTIDs references may name although nothing
            here holds them (registered through another account, outside this stand-in).
    """

    data_dir: Path
    api_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    conformance_dir: Path | None = None
    base_path: str = "/assistant/"
    public_base_url: str | None = None
    admin_token: str | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    registered_elsewhere: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        """Reject malformed keys and organization CTIDs early."""
        for key, orgs in self.api_keys.items():
            if len(key) != API_KEY_LENGTH:
                raise ValueError(f"API keys are {API_KEY_LENGTH} characters long")
            for org in orgs:
                if not CTID_PATTERN.match(org):
                    raise ValueError(f"{org!r} is not an organization CTID")
        for ctid in self.registered_elsewhere:
            if not CTID_PATTERN.match(ctid):
                raise ValueError(f"registered elsewhere: {ctid!r} is not a CTID")
        if not self.base_path.startswith("/"):
            raise ValueError("base_path must start with '/'")


#: Assistant properties whose values are organizations (PascalCase, as sent).
ORGANIZATION_REFERENCES = frozenset(
    {
        "OwnedBy",
        "OfferedBy",
        "AccreditedBy",
        "ApprovedBy",
        "RecognizedBy",
        "RegulatedBy",
        "RenewedBy",
        "RevokedBy",
        "CopyrightHolder",
        "AssertedBy",
    }
)


def organization_references(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, CTID) of every organization referenced by CTID anywhere in a request."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, path: str, organizations: bool) -> None:
        if isinstance(value, Mapping):
            if organizations and isinstance(value.get("CTID"), str):
                found.append((f"{path}.CTID", value["CTID"].strip()))
                return
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key), key in ORGANIZATION_REFERENCES)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]", organizations)
        elif organizations and isinstance(value, str) and CTID_PATTERN.match(value.strip()):
            found.append((path, value.strip()))

    walk(body, "", False)
    return found


def _error(status: int, message: str) -> Response:
    return json_response({"Successful": False, "Messages": [message]}, status)


def _result(
    successful: bool,
    messages: list[str],
    *,
    ctid: str | None = None,
    changed: bool = False,
    resource: StoredResource | None = None,
    urls: RegistryUrls | None = None,
    payload: dict[str, Any] | None = None,
) -> Response:
    """The Assistant's response envelope (always HTTP 200, as the real API answers)."""
    body: dict[str, Any] = {
        "Successful": successful,
        "WasChanged": changed,
        "Messages": messages,
        "CTID": ctid or "",
        "EnvelopeUrl": "",
        "GraphUrl": "",
        "RegistryEnvelopeIdentifier": "",
        "Payload": json.dumps(payload, ensure_ascii=False) if payload is not None else "",
    }
    if resource is not None and urls is not None:
        body["EnvelopeUrl"] = urls.envelope(resource.envelope_id)
        body["GraphUrl"] = urls.graph(resource.ctid)
        body["RegistryEnvelopeIdentifier"] = resource.envelope_id
    return json_response(body)


Renderer = Callable[[RegistryRules, Mapping[str, Any], RegistryUrls], Rendered]


class _Registry:
    """Request handlers bound to one configuration, rule set and store."""

    def __init__(self, config: RegistryConfig, rules: RegistryRules, store: RegistryStore) -> None:
        self.config = config
        self.rules = rules
        self.store = store

    # -- plumbing -------------------------------------------------------------------------

    def urls(self, request: Request) -> RegistryUrls:
        base = self.config.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
        return RegistryUrls(base)

    def authorize(self, request: Request) -> frozenset[str] | Response:
        """The organizations the request's API key may publish for, or a 401."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            return _error(401, "Authorization header is missing: send 'ApiToken <api key>'")
        if scheme != "ApiToken":
            return _error(401, "Authorization scheme must be ApiToken")
        key = key.strip()
        if len(key) == API_KEY_LENGTH:
            for known, orgs in self.config.api_keys.items():
                if hmac.compare_digest(known.encode(), key.encode()):
                    return orgs
        return _error(401, "The API key is not valid")

    async def json_body(self, request: Request) -> dict[str, Any] | Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(415, "Content-Type must be application/json")
        raw = await request.body()
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"The request body is not valid JSON: {exc}")
        if not isinstance(data, dict):
            return _error(400, "The request body must be a JSON object")
        return data

    @staticmethod
    def org_errors(body: Mapping[str, Any], orgs: frozenset[str]) -> tuple[str | None, list[str]]:
        org = body.get("PublishForOrganizationIdentifier")
        if not isinstance(org, str) or not org.strip():
            return None, ["PublishForOrganizationIdentifier is required"]
        org = org.strip()
        if not CTID_PATTERN.match(org):
            return None, [f"PublishForOrganizationIdentifier {org!r} is not a valid CTID"]
        if org not in orgs:
            return org, [f"This API key may not publish for organization {org}"]
        return org, []

    def dangling_organizations(self, body: Mapping[str, Any]) -> list[str]:
        """An error per organization reference to a CTID nobody registered.

        The registry resolves ``{"CTID": ...}`` references to organizations it holds; one
        that is neither published here, nor an account's own organization, nor configured
        as registered elsewhere would dangle, so it is refused (an unregistered
        organization must be described inline by name and webpage).
        """
        known_accounts = frozenset().union(*self.config.api_keys.values())
        errors: list[str] = []
        for path, ctid in organization_references(body):
            if ctid in known_accounts or ctid in self.config.registered_elsewhere:
                continue
            held = self.store.get(ctid)
            if held is not None and held.kind == "organization" and held.deleted_at is None:
                continue
            errors.append(
                f"{path}: organization {ctid} is not in the registry; publish it first or "
                "describe it inline (Type, Name, SubjectWebpage)"
            )
        return errors

    async def prepare(self, request: Request) -> tuple[dict[str, Any], frozenset[str]] | Response:
        orgs = self.authorize(request)
        if isinstance(orgs, Response):
            return orgs
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        return body, orgs

    # -- publishing -----------------------------------------------------------------------

    def publish_handler(
        self, action: str, kind: Kind, render: Renderer, *, store: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            prepared = await self.prepare(request)
            if isinstance(prepared, Response):
                return prepared
            body, orgs = prepared
            org, errors = self.org_errors(body, orgs)
            urls = self.urls(request)
            rendered = render(self.rules, body, urls)
            errors = errors + rendered.errors + self.dangling_organizations(body)
            ctid = rendered.ctid
            log_context(request, ctid=ctid, org=org)
            if errors or not rendered.ok or org is None:
                if ctid:
                    self.store.count(ctid, action, "rejected")
                return _result(False, errors + rendered.warnings, ctid=ctid)
            assert ctid is not None
            assert rendered.graph is not None
            assert rendered.ctdl_type is not None
            if not store:
                self.store.count(ctid, action, "formatted")
                return _result(True, rendered.warnings, ctid=ctid, payload=rendered.graph)
            outcome = self.store.publish(ctid, kind, rendered.ctdl_type, rendered.graph, org)
            existing = outcome.resource
            if outcome.result == "not_owner" and existing is not None:
                self.store.count(ctid, action, "rejected")
                return _result(
                    False,
                    [
                        f"CTID {ctid} was published by organization {existing.owner_org}: "
                        "only that organization may change it"
                    ],
                    ctid=ctid,
                )
            if outcome.result == "other_kind" and existing is not None:
                self.store.count(ctid, action, "rejected")
                return _result(
                    False, [f"CTID {ctid} is already used by a {existing.kind}"], ctid=ctid
                )
            self.store.count(ctid, action, "applied" if outcome.changed else "unchanged")
            resource = outcome.resource
            return _result(
                True,
                rendered.warnings,
                ctid=ctid,
                changed=outcome.changed,
                resource=resource,
                urls=urls,
                payload=resource.graph if resource else None,
            )

        return handle

    async def delete(self, request: Request) -> Response:
        prepared = await self.prepare(request)
        if isinstance(prepared, Response):
            return prepared
        body, orgs = prepared
        org, errors = self.org_errors(body, orgs)
        ctid = body.get("CTID")
        if not isinstance(ctid, str) or not CTID_PATTERN.match(ctid):
            errors.append(f"CTID {ctid!r} is not a valid CTID")
            ctid = None
        log_context(request, ctid=ctid, org=org)
        action = "credential/delete"
        if errors or org is None or ctid is None:
            if ctid:
                self.store.count(ctid, action, "rejected")
            return _result(False, errors, ctid=ctid)
        outcome = self.store.delete(ctid, "credential", org)
        messages = {
            "not_found": f"No credential with CTID {ctid} was found",
            "already_deleted": f"The credential {ctid} has already been deleted",
            "not_owner": f"CTID {ctid} was published by another organization: "
            "only that organization may delete it",
            "other_kind": f"CTID {ctid} is not a credential",
        }
        if outcome.result != "deleted":
            self.store.count(ctid, action, "rejected")
            return _result(False, [messages[outcome.result]], ctid=ctid)
        self.store.count(ctid, action, "deleted")
        return _result(True, [], ctid=ctid, changed=True)

    # -- read-back ------------------------------------------------------------------------

    def _live(self, ctid: str) -> StoredResource | Response:
        resource = self.store.get(ctid)
        if resource is None:
            return _error(404, f"{ctid} was not found")
        if resource.deleted_at is not None or resource.graph is None:
            return json_response(
                {
                    "Successful": False,
                    "Messages": [f"{ctid} has been deleted"],
                    "ctid": ctid,
                    "deletedAt": resource.deleted_at,
                },
                404,
            )
        return resource

    async def get_resource(self, request: Request) -> Response:
        resource = self._live(request.path_params["ctid"])
        if isinstance(resource, Response):
            return resource
        node = resource.main_node() or {}
        return json_response({"@context": CTDL_CONTEXT, **node})

    async def get_graph(self, request: Request) -> Response:
        resource = self._live(request.path_params["ctid"])
        if isinstance(resource, Response):
            return resource
        return json_response(resource.graph)

    async def get_envelope(self, request: Request) -> Response:
        envelope_id = request.path_params["envelope_id"]
        resource = self.store.by_envelope(envelope_id)
        if resource is None:
            return _error(404, f"envelope {envelope_id} was not found")
        live = self._live(resource.ctid)
        if isinstance(live, Response):
            return live
        return json_response(
            {
                "envelope_id": envelope_id,
                "envelope_ctid": resource.ctid,
                "envelope_type": "resource_data",
                "updated_at": resource.updated_at,
                "decoded_resource": resource.graph,
            }
        )

    async def list_credentials(self, request: Request) -> Response:
        org = request.path_params["org_ctid"]
        credentials = self.store.list_for_owner(org, "credential")
        if not credentials and not self.store.owner_known(org):
            return _error(404, f"organization {org} has published nothing here")
        urls = self.urls(request)
        items = []
        for resource in credentials:
            node = resource.main_node() or {}
            items.append(
                {
                    "ctid": resource.ctid,
                    "type": resource.ctdl_type,
                    "name": node.get("ceterms:name"),
                    "status": (node.get("ceterms:credentialStatusType") or {}).get(
                        "ceterms:targetNode"
                    ),
                    "resource": urls.resource(resource.ctid),
                    "graph": urls.graph(resource.ctid),
                    "version": resource.version,
                    "updatedAt": resource.updated_at,
                }
            )
        return json_response({"organization": org, "count": len(items), "credentials": items})

    # -- admin ----------------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        ctid = request.path_params.get("ctid")
        counts = self.store.counts(ctid)
        if ctid is not None:
            return json_response(counts.get(ctid, {"total": 0}))
        return json_response({"requests": counts})

    async def reset(self, _request: Request) -> Response:
        self.store.reset()
        return json_response({"reset": True})


def create_registry_app(config: RegistryConfig) -> Starlette:
    """Build the registry stand-in (nothing is served until an ASGI server runs it)."""
    conformance_dir = resolve_conformance_dir(config.conformance_dir)
    rules = RegistryRules.from_conformance(conformance_dir)
    store = RegistryStore(config.data_dir)
    injector = FaultInjector(config.faults)
    registry = _Registry(config, rules, store)
    guard = AdminGuard(config.admin_token, _error)
    base = config.base_path.rstrip("/")

    async def stats_with_faults(request: Request) -> Response:
        response = await registry.stats(request)
        if "ctid" in request.path_params:
            return response
        body = json.loads(bytes(response.body))
        body["faults"] = injector.snapshot()
        return json_response(body)

    async def healthz(_request: Request) -> Response:
        return json_response({"status": "ok"})

    routes: list[BaseRoute] = [
        Route(
            f"{base}/credential/publish",
            registry.publish_handler(
                "credential/publish", "credential", RegistryRules.render_credential
            ),
            methods=["POST"],
        ),
        Route(
            f"{base}/credential/publishGraph",
            registry.publish_handler(
                "credential/publishGraph", "credential", RegistryRules.render_graph
            ),
            methods=["POST"],
        ),
        Route(
            f"{base}/credential/format",
            registry.publish_handler(
                "credential/format", "credential", RegistryRules.render_credential, store=False
            ),
            methods=["POST"],
        ),
        Route(f"{base}/credential/delete", registry.delete, methods=["DELETE"]),
        Route(
            f"{base}/organization/publish",
            registry.publish_handler(
                "organization/publish", "organization", RegistryRules.render_organization
            ),
            methods=["POST"],
        ),
        Route(
            f"{base}/transfervalue/publish",
            registry.publish_handler(
                "transfervalue/publish", "transfervalue", RegistryRules.render_transfer_value
            ),
            methods=["POST"],
        ),
        Route("/resources/{ctid}", registry.get_resource, methods=["GET"]),
        Route("/graph/{ctid}", registry.get_graph, methods=["GET"]),
        Route("/envelopes/{envelope_id}", registry.get_envelope, methods=["GET"]),
        Route("/organizations/{org_ctid}/credentials", registry.list_credentials, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/stats", guard.guarded(stats_with_faults), methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/stats/{{ctid}}", guard.guarded(registry.stats), methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/reset", guard.guarded(registry.reset), methods=["POST"]),
        *fault_admin_routes(injector, guard, _error),
    ]

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = _error(exc.status_code, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessLogMiddleware, service="registry-standin"),
            Middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes, render_error=_error),
            Middleware(FaultMiddleware, injector=injector, render_error=_error),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.store = store
    app.state.faults = injector
    return app
