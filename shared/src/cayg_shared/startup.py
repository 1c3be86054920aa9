"""How a cayg service process starts, and refuses to: the one entry point of
``cayg-ingest``, ``cayg-normalize`` and ``cayg-publish``.

A service that cannot work must not look alive. Before anything is served the process
checks its settings, its configuration files and that Kafka answers (for a bounded time,
``STARTUP_TIMEOUT_S``); after that, a broker connection that fails during start-up ends the
process too (FastStream would otherwise leave a process whose ``/healthz`` answers 200 and
that never consumes). Every refusal is one line on stderr, and the exit status says which
kind it is, so a supervisor can tell "fix the configuration" from "try again later":

* 0 — ``--help`` or ``--check-config`` with nothing wrong, or a clean stop;
* 1 — Kafka could not be reached in time, or start-up failed (try again later);
* 2 — the settings or a configuration file are wrong (restarting will not help).
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TextIO, TypeVar

import uvicorn
from pydantic import ValidationError

from cayg_shared.config_check import Problem, check_tenants_file, first_line
from cayg_shared.kafka_probe import KafkaUnreachable, wait_for_kafka
from cayg_shared.logging import configure_logging
from cayg_shared.settings import ServiceSettings, settings_table

EXIT_OK: Final = 0
EXIT_UNAVAILABLE: Final = 1
EXIT_CONFIG: Final = 2

Settings = TypeVar("Settings", bound=ServiceSettings)
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class StartRefused(Exception):
    """The service will not start; ``status`` is its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServiceEntry(Generic[Settings]):
    """What one service's ``__main__`` contributes."""

    #: ``ingest``; the command is ``cayg-<name>``.
    name: str
    #: One sentence: what the service does.
    summary: str
    settings: type[Settings]
    #: Checks of the files the settings name (problems, never exceptions).
    check: Callable[[Settings], Sequence[Problem]]
    #: The composition root; may raise ``ValueError`` for configuration it refuses.
    create_app: Callable[[Settings], ASGIApp]
    extra_help: str = ""

    @property
    def command(self) -> str:
        """The console script."""
        return f"cayg-{self.name}"


def tenant_problems(settings: ServiceSettings) -> list[Problem]:
    """The service's tenant registry: set, readable, valid."""
    if settings.tenants_file is None:
        name = settings.env_name("tenants_file")
        return [Problem(name, "", "not set: the service needs the tenant registry")]
    _, problems = check_tenants_file(settings.tenants_file)
    return problems


def help_text(entry: ServiceEntry[Any]) -> str:
    """``cayg-<service> --help``: usage, every setting with its default, exit statuses."""
    rows = settings_table(entry.settings)
    width = max(len(name) for name, _, _ in rows)
    dwidth = max(len(default) for _, default, _ in rows)
    lines = [
        f"usage: {entry.command} [--help | --check-config]",
        "",
        textwrap.fill(entry.summary, 88),
        "",
        "Configured only through the environment. A service-specific variable wins over the",
        "shared one (CAYG_KAFKA__…, CAYG_TOPIC_PREFIX) that every cayg process also reads.",
        "",
        "options:",
        "  --help          print this and exit",
        "  --check-config  check the settings and the files they name, print the result, exit",
        "",
        "settings (environment variable, default, meaning):",
    ]
    for name, default, meaning in rows:
        lines.append(f"  {name:<{width}}  {default:<{dwidth}}  {meaning}")
    if entry.extra_help:
        lines += ["", entry.extra_help]
    lines += [
        "",
        "exit status: 0 clean stop · 1 Kafka unreachable within STARTUP_TIMEOUT_S, or start-up",
        "failed (a supervisor should retry) · 2 wrong settings or configuration files (fix them)",
    ]
    return "\n".join(lines)


def load_settings(entry: ServiceEntry[Settings]) -> Settings:
    """The settings from the environment, or a refusal naming the variable that is wrong."""
    try:
        return entry.settings()
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(part) for part in first["loc"]]
        name = entry.settings.env_name(*loc) if loc else entry.settings.env_prefix() + "*"
        message = str(first["msg"]).removeprefix("Value error, ")
        more = error.error_count() - 1
        tail = f" (and {more} more)" if more > 0 else ""
        raise StartRefused(f"{name}: {message}{tail}", EXIT_CONFIG) from None


def _refuse(entry: ServiceEntry[Any], message: str, stream: TextIO) -> None:
    print(f"{entry.command}: not started: {message}", file=stream, flush=True)


def run_service(entry: ServiceEntry[Any], argv: Sequence[str] | None = None) -> int:
    """Parse the (tiny) command line, check, connect, serve; the process's exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in ("-h", "--help"):
        print(help_text(entry))
        return EXIT_OK
    if arguments not in ([], ["--check-config"]):
        print(
            f"{entry.command}: unknown argument {arguments[0]!r} (try --help)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        settings = load_settings(entry)
        problems = list(entry.check(settings))
        if problems:
            if arguments:
                for problem in problems:
                    print(problem, file=sys.stderr)
            raise StartRefused(first_line(problems), EXIT_CONFIG)
        if arguments:
            print(f"{entry.command}: configuration OK")
            return EXIT_OK
        configure_logging(entry.name, level=settings.log_level)
        try:
            asyncio.run(wait_for_kafka(settings.kafka, within_s=settings.startup_timeout_s))
        except KafkaUnreachable as error:
            raise StartRefused(str(error), EXIT_UNAVAILABLE) from None
        try:
            app = entry.create_app(settings)
        except (ValueError, OSError) as error:
            raise StartRefused(str(error).splitlines()[0], EXIT_CONFIG) from None
        return serve(app, settings, on_failure=lambda text: _refuse(entry, text, sys.stderr))
    except StartRefused as refusal:
        _refuse(entry, str(refusal), sys.stderr)
        return refusal.status
    except KeyboardInterrupt:
        return EXIT_OK


class _StartGuard:
    """An ASGI wrapper that notices when the app fails to start, or stops by itself after
    starting (FastStream starts the broker after reporting start-up complete), and then
    stops the server instead of leaving it serving ``/healthz``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failure: str | None = None
        self.server: uvicorn.Server | None = None

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        stopping = False

        async def watched_receive() -> Any:
            nonlocal stopping
            message = await receive()
            stopping = stopping or message.get("type") == "lifespan.shutdown"
            return message

        async def quiet_send(message: Any) -> None:
            if message.get("type") in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
                # The traceback is replaced by one line (see run_service).
                message = {**message, "message": ""}
            await send(message)

        try:
            await self.app(scope, watched_receive, quiet_send)
        except BaseException as error:
            if not stopping:
                self.failure = _describe(error)
                if self.server is not None:
                    self.server.should_exit = True
            raise


def _describe(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).splitlines()[0] if str(error) else ""
    return f"start-up failed: {type(error).__name__}" + (f": {text[:300]}" if text else "")


def serve(app: ASGIApp, settings: ServiceSettings, *, on_failure: Callable[[str], None]) -> int:
    """Run the service until SIGINT/SIGTERM (in-flight messages finish before exit), or
    until its start fails; the exit status."""
    guard = _StartGuard(app)
    config = uvicorn.Config(
        guard,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.graceful_timeout_s) + 5,
    )
    server = uvicorn.Server(config)
    guard.server = server
    try:
        server.run()
    except SystemExit:
        # uvicorn exits with its own status when the lifespan start-up failed.
        on_failure(guard.failure or "start-up failed (the log above says why)")
        return EXIT_UNAVAILABLE
    if guard.failure is not None:
        on_failure(guard.failure)
        return EXIT_UNAVAILABLE
    return EXIT_OK
