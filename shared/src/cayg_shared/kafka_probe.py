"""Can the cluster be reached, and if not, why — in one line.

aiokafka reports any failed bootstrap as "Unable to bootstrap from [...]" and logs the
cause separately; an operator needs the cause: connection refused, unknown host, no
answer, a certificate not trusted, SASL credentials refused. :func:`probe` connects to
each bootstrap server the way every cayg client does (same TLS and SASL settings) and asks
for metadata; :func:`wait_for_kafka` retries that for a bounded time at a service's start.
Used by the services (start-up) and by the operator CLI (before any command).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from cayg_shared.settings import KafkaSettings


class KafkaUnreachable(Exception):
    """The cluster could not be reached; ``permanent`` when retrying cannot help (the
    credentials or the TLS trust are wrong)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


async def probe(kafka: KafkaSettings, *, timeout_s: float = 10.0) -> None:
    """Return once one bootstrap server answered a metadata request; else raise
    :class:`KafkaUnreachable` naming every server's reason."""
    options = kafka.client_options()
    reasons: list[str] = []
    permanent = False
    for host, port, _family in collect_hosts(kafka.bootstrap_servers, randomize=False):
        try:
            await asyncio.wait_for(_ask_metadata(str(host), int(port), options), timeout_s)
        except Exception as error:  # noqa: BLE001 - every cause becomes a reason
            reason, is_permanent = _reason(error, kafka, timeout_s)
            permanent = permanent or is_permanent
            reasons.append(f"{host}:{port}: {reason}")
            continue
        return
    raise KafkaUnreachable(
        f"cannot reach Kafka at {kafka.describe()}: {'; '.join(reasons) or 'no servers'}",
        permanent=permanent,
    )


async def _ask_metadata(host: str, port: int, options: dict[str, Any]) -> None:
    conn = await create_conn(
        host,
        port,
        client_id="cayg-probe",
        ssl_context=options.get("ssl_context"),
        security_protocol=options["security_protocol"],
        sasl_mechanism=options.get("sasl_mechanism"),
        sasl_plain_username=options.get("sasl_plain_username"),
        sasl_plain_password=options.get("sasl_plain_password"),
    )
    try:
        await conn.send(MetadataRequest([]))
    finally:
        conn.close()


def _reason(error: BaseException, kafka: KafkaSettings, timeout_s: float) -> tuple[str, bool]:
    """A short cause, and whether it is permanent."""
    cause: BaseException = error
    # aiokafka wraps socket and TLS errors in KafkaConnectionError.
    while isinstance(cause, KafkaConnectionError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({cause.verify_message}); check SSL_CAFILE", True
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed ({cause.reason or cause}); is the port a TLS one?", False
    if isinstance(cause, SaslAuthenticationFailed | AuthenticationFailedError):
        return (
            f"SASL authentication failed for user {kafka.sasl_username!r} "
            f"({kafka.sasl_mechanism}): wrong user or password",
            True,
        )
    if isinstance(cause, UnsupportedSaslMechanismError):
        return f"the listener does not offer SASL mechanism {kafka.sasl_mechanism}", True
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused (no broker listens there)", False
    if isinstance(cause, socket.gaierror):
        return "unknown host", False
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        hint = "" if kafka.uses_tls else "; a TLS or SASL listener? check SECURITY_PROTOCOL"
        return f"no answer within {timeout_s:g} s{hint}", False
    if isinstance(cause, KafkaConnectionError):
        return (
            f"connection closed by the broker ({str(cause)[:120]}); "
            "check SECURITY_PROTOCOL and SASL_MECHANISM against the listener",
            False,
        )
    if isinstance(cause, asyncio.IncompleteReadError):
        return "the server answered, but not as a Kafka broker (wrong port, or a proxy?)", False
    if isinstance(cause, OSError):
        return cause.strerror or type(cause).__name__, False
    if isinstance(cause, KafkaError):
        return f"{type(cause).__name__}: {str(cause)[:160]}", False
    return f"{type(cause).__name__}: {str(cause)[:160]}", False


async def wait_for_kafka(
    kafka: KafkaSettings, *, within_s: float, attempt_timeout_s: float = 5.0
) -> None:
    """Probe until the cluster answers, for at most ``within_s`` seconds (a broker that is
    still starting is waited for); raise the last :class:`KafkaUnreachable` after that, or
    at once when the cause is permanent."""
    deadline = time.monotonic() + within_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            await probe(kafka, timeout_s=max(0.5, min(attempt_timeout_s, remaining)))
        except KafkaUnreachable as error:
            if error.permanent or time.monotonic() + 1.0 >= deadline:
                raise KafkaUnreachable(
                    f"{error} (waited {within_s:g} s)", permanent=error.permanent
                ) from None
            await asyncio.sleep(1.0)
            continue
        return
