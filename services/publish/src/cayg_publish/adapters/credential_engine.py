"""The Credential Engine Registry Assistant API: client and :class:`~cayg_publish.domain.Target`.

Requests carry ``Authorization: ApiToken <key>`` and ``Idempotency-Key``. Answers are
``{Successful, WasChanged, Messages, CTID, EnvelopeUrl, GraphUrl, RegistryEnvelopeIdentifier,
Payload}``. Classification:

* transport errors, 408/425/429/5xx: retryable (``Retry-After`` honoured). Republishing a
  CTID updates in place, so retrying a publish that timed out after being applied is safe;
* other 4xx (401 bad key, 404 wrong base URL…): permanent;
* HTTP 2xx with ``Successful: false``: permanent validation failure carrying the
  Assistant's messages — **unless** every message reads as a passing server-side problem
  (see :data:`TRANSIENT_MESSAGE_MARKERS`: the Assistant reports some registry/database
  outages as ``Successful: false`` with HTTP 200), which is retryable;
* a delete of a CTID the registry does not have is a success: the desired state holds
  (this makes retried deletes idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Self

import httpx
from pydantic import SecretStr

from cayg_publish.adapters._http import (
    error_response_failure,
    failure_from_exception,
    new_client,
    response_record,
)
from cayg_publish.config import CredentialEngineTargetConfig
from cayg_publish.domain.catalog import (
    Applied,
    DocumentRenderer,
    Operation,
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

#: Lower-cased fragments of Assistant messages that describe a passing server problem
#: rather than a problem with our data. Only when *every* message of a failed answer
#: matches one of these is the failure retried; a validation message among them makes it
#: permanent. Conservative on purpose: misreading a validation error as transient only
#: costs the retry tiers before the DLQ, misreading a transient error as permanent loses
#: nothing either (the DLQ can be replayed) but needs an operator.
TRANSIENT_MESSAGE_MARKERS: Final = (
    "timeout",
    "timed out",
    "temporarily",
    "try again",
    "service unavailable",
    "server is busy",
    "too many requests",
    "deadlock",
    "unable to connect",
    "could not connect",
    "connection was closed",
    "gateway",
    "registry is not available",
    "error communicating with the registry",
)

#: Lower-cased fragments of an answer to a delete saying the CTID is not there.
NOT_FOUND_MARKERS: Final = ("not found", "no record", "does not exist", "was not found")

PUBLISH_CREDENTIAL: Final = "credential/publish"
PUBLISH_GRAPH: Final = "credential/publishGraph"
DELETE_CREDENTIAL: Final = "credential/delete"
PUBLISH_ORGANIZATION: Final = "organization/publish"
PUBLISH_TRANSFER_VALUE: Final = "transfervalue/publish"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RegistryResult:
    """The Assistant's answer to a successful request."""

    status: int
    successful: bool
    was_changed: bool | None
    messages: tuple[str, ...]
    ctid: str | None
    envelope_url: str | None
    graph_url: str | None
    registry_envelope_identifier: str | None
    credential_finder_url: str | None = None


def registry_messages(body: Any) -> tuple[str, ...]:
    """The ``Messages`` (or ASP.NET ``Message``) of an Assistant answer, as strings."""
    if not isinstance(body, Mapping):
        return ()
    messages = body.get("Messages")
    if isinstance(messages, list):
        return tuple(str(m) for m in messages if m is not None)
    message = body.get("Message") or body.get("message")
    return (str(message),) if message else ()


def classify_registry_messages(messages: tuple[str, ...]) -> FailureKind:
    """Retryable if every message reads as a passing server problem, else permanent."""
    if messages and all(
        any(marker in message.lower() for marker in TRANSIENT_MESSAGE_MARKERS)
        for message in messages
    ):
        return FailureKind.RETRYABLE
    return FailureKind.PERMANENT


def _is_not_found(messages: tuple[str, ...]) -> bool:
    return bool(messages) and all(
        any(marker in message.lower() for marker in NOT_FOUND_MARKERS) for message in messages
    )


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


class CredentialEngineClient:
    """A Registry Assistant client for one API key."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_key: SecretStr,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"CredentialEngineClient(base_url={str(self._http.base_url)!r})"

    @classmethod
    def from_config(
        cls,
        config: CredentialEngineTargetConfig,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        """A client for ``config``, resolving its API key (file or environment)."""
        http = new_client(str(config.base_url), config.timeouts, transport=transport)
        return cls(http, config.api_key.resolve(environ))

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def call(
        self,
        method: Literal["POST", "DELETE"],
        action: str,
        body: Mapping[str, Any],
        idempotency_key: str,
    ) -> RegistryResult:
        """Send ``body`` to ``action`` (e.g. ``credential/publish``); raise on failure."""
        headers = {
            "Authorization": f"ApiToken {self._api_key.get_secret_value()}",
            IDEMPOTENCY_HEADER: idempotency_key,
        }
        try:
            response = await self._http.request(method, action, json=dict(body), headers=headers)
        except httpx.HTTPError as exc:
            raise TargetFailure(failure_from_exception(exc)) from exc
        return self._interpret(response, deleting=method == "DELETE")

    async def formatted_graph(self, request: Mapping[str, Any]) -> Any:
        """``POST credential/format``: the CTDL graph the registry would store for
        ``request`` (nothing is stored); for reconciliation."""
        result = await self._get_json("POST", "credential/format", request)
        payload = result.get("Payload") if isinstance(result, Mapping) else None
        return json.loads(payload) if isinstance(payload, str) and payload else None

    async def held_graph(self, url: str) -> Any:
        """The graph the registry holds at ``url`` (its GraphUrl), None when it has none."""
        return await self._get_json("GET", url, None)

    async def _get_json(
        self, method: Literal["GET", "POST"], url: str, body: Mapping[str, Any] | None
    ) -> Any:
        headers = {"Authorization": f"ApiToken {self._api_key.get_secret_value()}"}
        try:
            response = await self._http.request(
                method, url, json=None if body is None else dict(body), headers=headers
            )
        except httpx.HTTPError as exc:
            raise TargetFailure(failure_from_exception(exc)) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TargetFailure(
                error_response_failure(
                    response, self._clock(), messages_of=registry_messages, what="the registry"
                )
            )
        return response.json()

    async def publish_credential(
        self, request: Mapping[str, Any], idempotency_key: str
    ) -> RegistryResult:
        """``POST credential/publish``."""
        return await self.call("POST", PUBLISH_CREDENTIAL, request, idempotency_key)

    async def publish_graph(
        self, request: Mapping[str, Any], idempotency_key: str
    ) -> RegistryResult:
        """``POST credential/publishGraph`` (CTDL JSON-LD ``@graph`` input)."""
        return await self.call("POST", PUBLISH_GRAPH, request, idempotency_key)

    async def publish_organization(
        self, request: Mapping[str, Any], idempotency_key: str
    ) -> RegistryResult:
        """``POST organization/publish``."""
        return await self.call("POST", PUBLISH_ORGANIZATION, request, idempotency_key)

    async def publish_transfer_value(
        self, request: Mapping[str, Any], idempotency_key: str
    ) -> RegistryResult:
        """``POST transfervalue/publish``."""
        return await self.call("POST", PUBLISH_TRANSFER_VALUE, request, idempotency_key)

    async def delete_credential(
        self, ctid: str, publish_for_organization: str, idempotency_key: str
    ) -> RegistryResult:
        """``DELETE credential/delete`` with ``{CTID, PublishForOrganizationIdentifier}``."""
        body = {"CTID": ctid, "PublishForOrganizationIdentifier": publish_for_organization}
        return await self.call("DELETE", DELETE_CREDENTIAL, body, idempotency_key)

    def _interpret(self, response: httpx.Response, *, deleting: bool) -> RegistryResult:
        status = response.status_code
        if deleting and status == 404:
            return RegistryResult(status, True, False, (), None, None, None, None)
        if not 200 <= status < 300:
            raise TargetFailure(
                error_response_failure(
                    response,
                    self._clock(),
                    messages_of=registry_messages,
                    what="the Registry Assistant",
                )
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping) or not isinstance(body.get("Successful"), bool):
            # A 2xx that is not an Assistant answer (a proxy's HTML page, a truncated body).
            raise TargetFailure(
                transport_failure(
                    TransportError.PROTOCOL,
                    f"the Registry Assistant answered {status} without a result object",
                )
            )
        messages = registry_messages(body)
        if not body["Successful"]:
            if deleting and _is_not_found(messages):
                return RegistryResult(status, True, False, messages, None, None, None, None)
            kind = classify_registry_messages(messages)
            detail = "the Registry Assistant refused the request"
            if messages:
                detail += ": " + "; ".join(messages)[:500]
            record = response_record(response)
            if kind is FailureKind.RETRYABLE:
                raise TargetFailure(
                    Failure(
                        kind=kind,
                        reason="registry-transient",
                        detail=detail,
                        status=status,
                        messages=messages,
                        response=record,
                    )
                )
            raise TargetFailure(
                permanent_failure(
                    "validation", detail, status=status, messages=messages, response=record
                )
            )
        was_changed = body.get("WasChanged")
        return RegistryResult(
            status=status,
            successful=True,
            was_changed=was_changed if isinstance(was_changed, bool) else None,
            messages=messages,
            ctid=_optional_str(body, "CTID"),
            envelope_url=_optional_str(body, "EnvelopeUrl"),
            graph_url=_optional_str(body, "GraphUrl"),
            registry_envelope_identifier=_optional_str(body, "RegistryEnvelopeIdentifier"),
            credential_finder_url=_optional_str(body, "CredentialFinderUrl"),
        )


#: Renders a change for the registry (empty: the change is not for the registry).


class CredentialEngineTarget:
    """Publishes definitions, organizations and transfer values to one registry account."""

    def __init__(
        self,
        name: str,
        client: CredentialEngineClient,
        renderer: DocumentRenderer,
        *,
        limits: TargetLimits | None = None,
    ) -> None:
        self._name = name
        self._client = client
        self._renderer = renderer
        self._limits = limits or TargetLimits()

    def __repr__(self) -> str:
        return f"CredentialEngineTarget(name={self._name!r})"

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
        """Credentials and the tenant's organization."""
        return self._renderer.document_kinds

    async def render_document(self, ref: DocumentRef) -> Sequence[Rendering]:
        """The Assistant requests that bring ``ref`` up to date."""
        return await self._renderer.document(ref)

    async def apply(self, rendering: Rendering, idempotency_key: str) -> Applied:
        """Send the rendered request; raises :class:`TargetFailure`."""
        method: Literal["POST", "DELETE"] = (
            "DELETE" if rendering.operation is Operation.DELETE else "POST"
        )
        result = await self._client.call(method, rendering.action, rendering.body, idempotency_key)
        return Applied(
            remote_id=result.ctid or rendering.remote_id,
            remote_url=result.envelope_url or result.graph_url,
            changed=result.was_changed,
            status=result.status,
            messages=result.messages,
        )

    async def read_back(self) -> ReadBack:
        """A check of what the registry holds against renderings: for a credential, the
        graph ``credential/format`` renders from the request against the graph at the
        envelope or graph URL the registry answered (None: the same; else what differs).
        Other requests (deletes, organizations, transfer values) are checked for presence.
        """
        client = self._client

        async def check(rendering: Rendering, remote_url: str | None) -> str | None:
            if remote_url is None:
                return None if rendering.operation is Operation.DELETE else "never published"
            held = await client.held_graph(remote_url)
            if isinstance(held, Mapping) and "decoded_resource" in held:
                held = held["decoded_resource"]  # an envelope
            if rendering.operation is Operation.DELETE:
                return None if held is None else "still in the registry"
            if held is None:
                return "missing from the registry"
            if rendering.action != PUBLISH_CREDENTIAL:
                return None
            expected = await client.formatted_graph(rendering.body)
            if expected is not None and expected != held:
                return "the registry holds other content"
            return None

        return check

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()
