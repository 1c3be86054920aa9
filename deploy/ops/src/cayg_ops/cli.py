"""``cayg`` — the operator CLI (typer + rich).

    cayg status                         consumer lag, dead letters, publish documents
    cayg dlq list | replay | resolve    the dead-letter workflow (cayg_ops.dlq)
    cayg backfill FILE --tenant T       feed historic awards/definitions (CSV or JSONL)
    cayg published --tenant T           what publish delivered (or holds back) per document
    cayg reconcile --tenant T           re-render every document of a tenant; report changes
    cayg config check                   check tenants.json and the publish targets file
    cayg topics apply | acls            create the topics; the ACLs each principal needs
    cayg demo up|down|feed|fault        the local demo stack

Kafka is reached as the services reach it: ``CAYG_KAFKA__BOOTSTRAP_SERVERS``,
``CAYG_KAFKA__SECURITY_PROTOCOL``, ``CAYG_KAFKA__SASL_*``, ``CAYG_KAFKA__SSL_*`` and
``CAYG_TOPIC_PREFIX`` (the names every service falls back to), or the global options.
Every failure is one line on stderr; the exit status says what kind (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer

# typer carries its own copy of click; its errors are what a bad command line raises.
from typer._click import Context
from typer._click.core import Command
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup

# Everything else is imported by the command that needs it, when it runs: `cayg backfill`
# should not carry publish's ledger adapters, JSON-LD and the PostgreSQL driver (about
# 40 MiB and a second of start-up), nor `cayg --help` any of it.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from cayg_ops import dlq, ledger_view, topic_setup
    from cayg_shared.config_check import Problem
    from cayg_shared.settings import KafkaSettings
    from cayg_shared.topics import Topics

#: The demo broker, when nothing else is configured.
DEFAULT_BOOTSTRAP: Final = "127.0.0.1:19092"
#: ``cayg_ops.dlq.STAGES`` (a test keeps them equal): needed for help texts, before dlq.
STAGES: Final = ("ingest", "normalize", "publish")
#: ``cayg_publish.domain.projection.DocumentState`` values (a test keeps them equal).
DOCUMENT_STATES: Final = ("dirty", "clean", "waiting", "failing", "rejected")
#: ``cayg_ops.backfill.SERVICE_MAX_MESSAGE_BYTES`` (a test keeps them equal).
SERVICE_MAX_MESSAGE_BYTES: Final = 1_048_576
DEFAULT_TENANTS_FILE: Final = "deploy/config/tenants.json"
DEFAULT_TOPICS_CONFIG: Final = "deploy/config/topics.toml"

EXIT_OK: Final = 0
EXIT_NOT_OK: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130
EXIT_CODES: Final = {
    EXIT_OK: "done",
    EXIT_NOT_OK: "done, but not everything is well: problems found, letters that failed "
    "again or cannot be replayed, documents still pending, rows refused",
    EXIT_USAGE: "wrong options, or input and configuration files that cannot be used",
    EXIT_UNREACHABLE: "Kafka (or the ledger) could not be reached or refused the credentials",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
EPILOG: Final = "Exit status: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


class CliFailure(Exception):
    """A command that cannot go on: one line for the operator and an exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class State:
    """Global options, resolved once per invocation."""

    overrides: dict[str, Any] = field(default_factory=dict)
    topic_prefix: str | None = None
    timeout_s: float = 10.0
    command: str = "cayg"

    def connection(self) -> tuple[KafkaSettings, Topics]:
        """The cluster and the topic names: options over ``CAYG_KAFKA__…`` /
        ``CAYG_TOPIC_PREFIX`` (the names the services fall back to)."""
        from pydantic import ValidationError  # noqa: PLC0415 - see the imports

        from cayg_shared.settings import ConnectionSettings  # noqa: PLC0415
        from cayg_shared.topics import TopicError, Topics  # noqa: PLC0415

        kafka = dict(self.overrides)
        configured = {name.upper() for name in os.environ}
        if "bootstrap_servers" not in kafka and "CAYG_KAFKA__BOOTSTRAP_SERVERS" not in configured:
            # CAYG_KAFKA_BOOTSTRAP: the CLI's own name before it shared the services'.
            kafka["bootstrap_servers"] = os.environ.get("CAYG_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
        given: dict[str, Any] = {"kafka": kafka}
        if self.topic_prefix is not None:
            given["topic_prefix"] = self.topic_prefix
        try:
            settings = ConnectionSettings(**given)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise CliFailure(
                f"Kafka settings ({where}; options or CAYG_KAFKA__*): {message}"
            ) from None
        try:
            return settings.kafka, Topics(settings.topic_prefix)
        except TopicError as error:
            raise CliFailure(str(error)) from None

    async def reach(self) -> tuple[KafkaSettings, Topics]:
        """The connection, after checking that the cluster answers (a precise reason if not)."""
        from cayg_shared.kafka_probe import KafkaUnreachable, probe  # noqa: PLC0415

        kafka, topics = self.connection()
        try:
            await probe(kafka, timeout_s=self.timeout_s)
        except KafkaUnreachable as error:
            raise CliFailure(str(error), EXIT_UNREACHABLE) from None
        return kafka, topics


#: ``cayg issuer``'s help: ``cayg_ops.issuer.issuer_app``'s (a test keeps them equal).
ISSUER_HELP: Final = (
    "The issuer documents an institution hosts (DID / controller document, OB Profile)."
)


class _Commands(TyperGroup):
    """``cayg``'s commands. ``cayg issuer`` (publish's ledger adapters and the signing
    library behind it) is imported only when it is the command run; a listing (``cayg
    --help``) shows a stand-in with the same name and help."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), "issuer"]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name == "issuer":
            return TyperCommand("issuer", help=ISSUER_HELP, rich_markup_mode=None)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name == "issuer":
            command = _issuer_group()
        return name, command, rest


def _issuer_group() -> TyperGroup:
    """``cayg issuer`` as ``app.add_typer(issuer_app, name="issuer")`` would build it."""
    from typer.main import get_group_from_info  # noqa: PLC0415 - see the imports
    from typer.models import TyperInfo  # noqa: PLC0415

    from cayg_ops import issuer  # noqa: PLC0415

    return get_group_from_info(
        TyperInfo(issuer.issuer_app, name="issuer"),
        pretty_exceptions_short=app.pretty_exceptions_short,
        suggest_commands=app.suggest_commands,
        rich_markup_mode=app.rich_markup_mode,
    )


app = typer.Typer(
    name="cayg",
    cls=_Commands,
    help="cayg-sync operator CLI: pipeline status, dead letters, backfill, what was "
    "published, configuration and topics.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
dlq_app = typer.Typer(
    help="Dead letters: list them, replay what was fixed, resolve the rest.",
    epilog=EPILOG,
    no_args_is_help=True,
)
config_app = typer.Typer(help="Check the configuration files.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics and ACLs.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(config_app, name="config")
app.add_typer(topics_app, name="topics")


def _state(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    return state if state is not None else State()


@app.callback()
def _global(  # noqa: PLR0917 - typer maps parameters to options
    ctx: typer.Context,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap servers (default $CAYG_KAFKA__BOOTSTRAP_SERVERS, "
            f"else the demo broker {DEFAULT_BOOTSTRAP})",
            show_default=False,
        ),
    ] = None,
    topic_prefix: Annotated[
        str | None,
        typer.Option(help="prefix of every topic (default $CAYG_TOPIC_PREFIX)"),
    ] = None,
    security_protocol: Annotated[
        str | None,
        typer.Option(
            help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL ($CAYG_KAFKA__SECURITY_PROTOCOL)"
        ),
    ] = None,
    sasl_mechanism: Annotated[
        str | None,
        typer.Option(help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 ($CAYG_KAFKA__SASL_MECHANISM)"),
    ] = None,
    sasl_username: Annotated[
        str | None, typer.Option(help="SASL user ($CAYG_KAFKA__SASL_USERNAME)")
    ] = None,
    sasl_password_file: Annotated[
        Path | None,
        typer.Option(help="file holding the SASL password ($CAYG_KAFKA__SASL_PASSWORD_FILE)"),
    ] = None,
    ssl_cafile: Annotated[
        Path | None, typer.Option(help="CA bundle of the brokers ($CAYG_KAFKA__SSL_CAFILE)")
    ] = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="client certificate, mutual TLS ($CAYG_KAFKA__SSL_CERTFILE)")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="client key, mutual TLS ($CAYG_KAFKA__SSL_KEYFILE)")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.5, help="seconds to wait for Kafka to answer")
    ] = 10.0,
) -> None:
    """cayg-sync operator CLI."""
    overrides: dict[str, Any] = {}
    for name, value in (
        ("bootstrap_servers", bootstrap),
        ("security_protocol", security_protocol),
        ("sasl_mechanism", sasl_mechanism),
        ("sasl_username", sasl_username),
        ("ssl_cafile", ssl_cafile),
        ("ssl_certfile", ssl_certfile),
        ("ssl_keyfile", ssl_keyfile),
    ):
        if value is not None:
            overrides[name] = value
    if sasl_password_file is not None:
        overrides["sasl_password_file"] = sasl_password_file
    command = ctx.invoked_subcommand or ""
    ctx.obj = State(overrides, topic_prefix, timeout, f"cayg {command}".strip())


# ---------------------------------------------------------------------------- helpers

T = TypeVar("T")


def _console() -> Console:
    """stdout; wide and plain when it is not a terminal, so pipes and logs get whole lines."""
    from rich.console import Console  # noqa: PLC0415 - see the imports

    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if tty else 200, soft_wrap=not tty, highlight=False)


def _run(state: State, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work``; Kafka failures become one line (exit 3)."""
    from aiokafka.errors import KafkaError  # noqa: PLC0415 - see the imports

    try:
        return asyncio.run(work())
    except CliFailure:
        raise
    except KafkaError as error:
        raise CliFailure(
            f"Kafka refused or failed: {type(error).__name__}: {str(error)[:200]}",
            EXIT_UNREACHABLE,
        ) from None
    except TimeoutError:
        raise CliFailure(
            f"Kafka did not answer in time (--timeout {state.timeout_s:g})", EXIT_UNREACHABLE
        ) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table  # noqa: PLC0415 - see the imports

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _targets_file(path: Path | None) -> Path:
    if path is None:
        raise CliFailure(
            "no publish targets file: give --targets-file or set CAYG_PUBLISH_TARGETS_FILE"
        )
    return path


def _load_view(path: Path | None) -> ledger_view.TargetsView:
    from cayg_ops import ledger_view  # noqa: PLC0415 - see the imports

    try:
        return ledger_view.TargetsView.load(_targets_file(path))
    except ledger_view.LedgerViewError as error:
        raise CliFailure(str(error)) from None


TargetsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--targets-file",
        envvar="CAYG_PUBLISH_TARGETS_FILE",
        help="publish targets file, for the ledger ($CAYG_PUBLISH_TARGETS_FILE)",
        show_envvar=False,
    ),
]
TenantsOption = Annotated[
    Path,
    typer.Option(
        "--tenants",
        envvar="CAYG_TENANTS_FILE",
        help="tenant registry ($CAYG_TENANTS_FILE)",
        show_envvar=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout instead of tables")]


# ---------------------------------------------------------------------------- status


@app.command(epilog=EPILOG)
def status(
    ctx: typer.Context,
    targets_file: TargetsFileOption = None,
    as_json: JsonOption = False,
) -> int:
    """Consumer lag per service group, dead letters per stage and state, publish documents
    per target and state (the latter from the ledger, given a targets file)."""
    from cayg_ops import dlq, kafka_view, ledger_view  # noqa: PLC0415 - see the imports

    state = _state(ctx)

    async def gather() -> dict[str, Any]:
        kafka, topics = await state.reach()
        lags = await kafka_view.consumer_lag(kafka)
        found = await dlq.letters(kafka, topics)
        held = {
            stage: await kafka_view.topic_depth(kafka, dlq.dlq_topic(topics, stage))
            for stage in STAGES
        }
        return {
            "consumer_lag": [
                {"group": lag.group, "lag": lag.lag, "partitions": lag.partitions} for lag in lags
            ],
            "dead_letters": {
                stage: {"held": held[stage], **counts}
                for stage, counts in dlq.summary(found).items()
            },
        }

    report = _run(state, gather)
    documents: list[tuple[str, str, str, str, int]] | None = None
    if targets_file is not None:
        view = _load_view(targets_file)
        documents = asyncio.run(ledger_view.document_counts(view))
        report["publish_documents"] = [
            {"target": t, "tenant": n, "state": s, "reason": r or None, "count": c}
            for t, n, s, r, c in documents
        ]
    if as_json:
        _print_json(report)
        return EXIT_OK
    console = _console()
    lag_table = _table("group", "messages behind", "partitions", title="consumer lag")
    for row in report["consumer_lag"]:
        note = str(row["partitions"]) if row["partitions"] else "0 (nothing committed yet)"
        lag_table.add_row(row["group"], str(row["lag"]), note)
    console.print(lag_table)
    letters = _table(
        "stage", "open", "failed again", "replayed", "resolved", "held", title="dead letters"
    )
    for stage, counts in report["dead_letters"].items():
        letters.add_row(
            stage,
            *(str(counts.get(s, 0)) for s in ("open", "failed-again", "replayed", "resolved")),
            str(counts["held"]),
        )
    console.print(letters)
    if documents is None:
        console.print("publish documents: (give --targets-file or set CAYG_PUBLISH_TARGETS_FILE)")
        return EXIT_OK
    docs = _table("target", "tenant", "state", "reason", "count", title="publish documents")
    for target, tenant, doc_state, reason, count in documents:
        docs.add_row(target, tenant, doc_state, reason or "", str(count))
    console.print(docs)
    return EXIT_OK


# ---------------------------------------------------------------------------- dlq

StageOption = Annotated[
    list[str] | None,
    typer.Option("--stage", help="ingest, normalize or publish (repeatable; default all)"),
]
TenantFilter = Annotated[str | None, typer.Option("--tenant", help="only this tenant's letters")]
ReasonOption = Annotated[
    list[str] | None, typer.Option("--reason", help="only this reason code (repeatable)")
]
SinceOption = Annotated[
    str | None,
    typer.Option(help="parked at or after: ISO date/date-time, or an age like 12h, 7d"),
]
UntilOption = Annotated[str | None, typer.Option(help="parked at or before (same forms)")]
LetterOption = Annotated[
    list[str] | None,
    typer.Option("--letter", help="one letter by its coordinates topic@partition:offset"),
]


def _filters(  # noqa: PLR0917 - the filter options, in their order
    stage: list[str] | None,
    tenant: str | None,
    reason: list[str] | None,
    since: str | None,
    until: str | None,
    letter: list[str] | None,
    states: frozenset[dlq.LetterState],
) -> dlq.Filters:
    from cayg_ops import dlq  # noqa: PLC0415 - see the imports

    for name in stage or ():
        if name not in STAGES:
            raise CliFailure(f"--stage {name!r}: choose from {', '.join(STAGES)}")
    try:
        start = dlq.parse_time(since) if since else None
        end = dlq.parse_time(until) if until else None
    except ValueError as error:
        raise CliFailure(str(error)) from None
    return dlq.Filters(
        stages=tuple(stage or STAGES),
        tenant=tenant,
        reasons=tuple(reason or ()),
        since=start,
        until=end,
        letters=tuple(letter or ()),
        states=states,
    )


def _when(letter: dlq.Letter) -> str:
    when = letter.failed_at
    return when.strftime("%Y-%m-%d %H:%M:%SZ") if when else "?"


@dlq_app.command("list", epilog=EPILOG)
def dlq_list(  # noqa: PLR0917 - typer maps parameters to options
    ctx: typer.Context,
    stage: StageOption = None,
    tenant: TenantFilter = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    letter: LetterOption = None,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="also letters replayed (and not parked again), resolved, and repeats"
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="most letters shown")] = 50,
    as_json: JsonOption = False,
) -> int:
    """Parked messages still to act on — open, or replayed and failed again — with when,
    tenant, event id, reason and detail, newest last."""
    from cayg_ops import dlq  # noqa: PLC0415 - see the imports

    state = _state(ctx)
    states = frozenset(dlq.LetterState) if show_all else dlq.TO_ACT_ON
    chosen = _filters(stage, tenant, reason, since, until, letter, states)

    async def gather() -> list[dlq.Letter]:
        kafka, topics = await state.reach()
        return await dlq.letters(kafka, topics)

    found = [item for item in _run(state, gather) if chosen.matches(item)]
    found.sort(key=lambda item: (item.failed_at is None, item.failed_at or 0))
    shown = found[-limit:]
    if as_json:
        _print_json([item.as_json() for item in shown])
        return EXIT_OK
    console = _console()
    hidden = "" if show_all else " (replayed and resolved letters hidden: --all)"
    console.print(
        f"{len(found)} letter(s){hidden}" + (f", last {limit}" if len(found) > limit else "")
    )
    table = _table("parked", "stage", "tenant", "reason", "state", "event id", "letter", "detail")
    for item in shown:
        detail = item.item.letter.detail[:160] if item.item.letter else ""
        if item.item.letter and item.item.letter.field_path:
            detail = f"at {item.item.letter.field_path}: {detail}"
        if item.repeats and item.state is dlq.LetterState.FAILED_AGAIN:
            last = item.repeats[-1]
            detail += f" | replayed {len(item.replays)}x, failed again: {last.reason}"
        if item.item.unreplayable:
            detail += f" | cannot be replayed: {item.item.unreplayable}"
        event = item.item.letter.event_id if item.item.letter else None
        table.add_row(
            _when(item),
            item.stage,
            item.tenant or "-",
            item.reason,
            item.state.value,
            str(event) if event else "-",
            item.coordinates,
            detail,
        )
    console.print(table)
    return EXIT_OK


@dlq_app.command("replay", epilog=EPILOG)
def dlq_replay(  # noqa: PLR0917 - typer maps parameters to options
    ctx: typer.Context,
    stage: StageOption = None,
    tenant: TenantFilter = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    letter: LetterOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="really send (without it: a dry run)")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be sent, send nothing")
    ] = False,
    include_replayed: Annotated[
        bool,
        typer.Option(help="also letters already replayed and not parked again, or resolved"),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds to watch whether each copy is read and not parked again (0: don't)",
        ),
    ] = 15.0,
    as_json: JsonOption = False,
) -> int:
    """Send the chosen letters' original messages back where they came from, record each
    replay, and report per letter whether the copy was accepted or failed again (a letter
    that fails again is folded into the original, never listed twice)."""
    from cayg_ops import dlq  # noqa: PLC0415 - see the imports

    state = _state(ctx)
    states = (
        frozenset(s for s in dlq.LetterState if s is not dlq.LetterState.REPEAT)
        if include_replayed
        else dlq.TO_ACT_ON
    )
    chosen = _filters(stage, tenant, reason, since, until, letter, states)
    really = yes and not dry_run

    async def work() -> tuple[list[dlq.Letter], list[dlq.Letter], list[dlq.ReplayOutcome]]:
        kafka, topics = await state.reach()
        found = [item for item in await dlq.letters(kafka, topics) if chosen.matches(item)]
        sendable = [item for item in found if item.item.unreplayable is None]
        refused = [item for item in found if item.item.unreplayable is not None]
        if not really or not sendable:
            return sendable, refused, []
        return sendable, refused, await dlq.replay(kafka, topics, sendable, wait_s=wait)

    sendable, refused, outcomes = _run(state, work)
    failed = [o for o in outcomes if o.outcome == "failed-again"]
    # A dry run only reports: it exits 0 whatever it found.
    status = EXIT_NOT_OK if really and (failed or refused) else EXIT_OK
    if as_json:
        _print_json(
            {
                "dry_run": not really,
                "would_replay": [item.as_json() for item in sendable] if not really else [],
                "replayed": [o.as_json() for o in outcomes],
                "not_replayable": [
                    {"letter": i.coordinates, "because": i.item.unreplayable} for i in refused
                ],
            }
        )
        return status
    console = _console()
    for item in refused:
        console.print(f"cannot replay {item.coordinates} ({item.reason}): {item.item.unreplayable}")
    if not sendable:
        console.print("nothing to replay" if not refused else "nothing else to replay")
        return status
    if not really:
        for item in sendable:
            console.print(f"  would replay {item.coordinates} ({item.stage}, {item.reason})")
        console.print(f"dry run: {len(sendable)} letter(s) would be replayed; add --yes to send")
        return status
    table = _table("letter", "stage", "reason", "copy", "outcome")
    for outcome in outcomes:
        text = outcome.outcome
        if outcome.repeat is not None and outcome.repeat.letter is not None:
            again = outcome.repeat.letter
            text = f"failed again: {again.reason}: {again.detail[:120]}"
        elif outcome.outcome == "pending":
            text = f"sent; not read by every consumer within {wait:g} s (is the service running?)"
        table.add_row(
            outcome.letter.coordinates,
            outcome.letter.stage,
            outcome.letter.reason,
            outcome.copy.coordinates,
            text,
        )
    console.print(table)
    accepted = sum(o.outcome == "accepted" for o in outcomes)
    console.print(
        f"{len(outcomes)} replayed: {accepted} accepted, {len(failed)} failed again, "
        f"{len(outcomes) - accepted - len(failed)} not confirmed yet "
        "(letters that failed again stay listed once, marked failed-again)"
    )
    return status


@dlq_app.command("resolve", epilog=EPILOG)
def dlq_resolve(  # noqa: PLR0917 - typer maps parameters to options
    ctx: typer.Context,
    note: Annotated[str, typer.Option(help="why nothing more is to be done (kept with the mark)")],
    stage: StageOption = None,
    tenant: TenantFilter = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    letter: LetterOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="really mark (without it: a dry run)")] = False,
    as_json: JsonOption = False,
) -> int:
    """Mark letters as resolved without replaying them (the SIS will resend, a test
    message…); they leave `dlq list` and expire with the topic's retention."""
    from cayg_ops import dlq  # noqa: PLC0415 - see the imports

    state = _state(ctx)
    chosen = _filters(stage, tenant, reason, since, until, letter, dlq.TO_ACT_ON)

    async def work() -> tuple[list[dlq.Letter], list[dlq.Action]]:
        kafka, topics = await state.reach()
        found = [item for item in await dlq.letters(kafka, topics) if chosen.matches(item)]
        if not yes or not found:
            return found, []
        return found, await dlq.resolve(kafka, topics, found, note=note)

    found, actions = _run(state, work)
    if as_json:
        _print_json(
            {
                "dry_run": not yes,
                "letters": [item.as_json() for item in found],
                "resolved": len(actions),
            }
        )
        return EXIT_OK
    console = _console()
    for item in found:
        console.print(
            f"  {'resolved' if yes else 'would resolve'} {item.coordinates} ({item.reason})"
        )
    console.print(
        f"{len(actions)} letter(s) marked resolved"
        if yes
        else f"dry run: {len(found)} letter(s) would be marked resolved; add --yes"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- backfill


@app.command("backfill", epilog=EPILOG)
def backfill_command(  # noqa: PLR0917 - typer maps parameters to options
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or JSONL file (see deploy/ops/README.md)")],
    tenant: Annotated[str, typer.Option(help="the tenant the rows belong to")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the file name)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="check the rows, send nothing")] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="send the valid rows even if some are not")
    ] = False,
    batch_id: Annotated[
        str | None,
        typer.Option(help="the run's id (default: from the file's content); a new one re-keys"),
    ] = None,
    recorded_at: Annotated[
        str | None, typer.Option(help="recordedAt for rows without one (ISO 8601 date-time)")
    ] = None,
    tenants: TenantsOption = Path(DEFAULT_TENANTS_FILE),
    max_message_bytes: Annotated[
        int, typer.Option(min=1, help="ingest's message limit, for tenants without their own")
    ] = SERVICE_MAX_MESSAGE_BYTES,
    batch_size: Annotated[int, typer.Option(min=1, help="records confirmed per batch")] = 500,
    resume: Annotated[
        bool,
        typer.Option(
            help="go on after the last acknowledged batch of an interrupted run of FILE "
            "(refused when FILE or the options changed)"
        ),
    ] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="where the run's progress is kept (default: .cayg/backfill/<file name>."
            "<tenant>.<hash of its path>.json in this directory)"
        ),
    ] = None,
) -> int:
    """Check every row of FILE, then produce them as backfill records to
    sis.events.<tenant>, in chunks, keeping a checkpoint after each acknowledged one.
    Re-running the same file sends the same event ids; --resume goes on where an
    interrupted run stopped. Progress goes to stderr."""
    from cayg_ops import backfill  # noqa: PLC0415 - see the imports
    from cayg_shared.config_check import check_tenants_file  # noqa: PLC0415
    from cayg_shared.topics import TopicError  # noqa: PLC0415

    state = _state(ctx)
    if fmt is not None and fmt not in ("csv", "jsonl"):
        raise CliFailure(f"--format {fmt!r}: choose csv or jsonl")
    registry, problems = check_tenants_file(tenants)
    if registry is None:
        first = problems[0]
        if first.where == "" and "cannot read" in first.message:
            raise CliFailure(
                f"cannot read the tenant registry {tenants}: {first.message.split(': ', 1)[-1]}"
            )
        raise CliFailure(
            f"{tenants} is not a valid tenant registry: {len(problems)} problem(s), "
            f"first: {first.where}: {first.message}"
        )
    profile = registry.get(tenant)
    if profile is None:
        known = ", ".join(registry.tenants) or "none"
        raise CliFailure(f"tenant {tenant!r} is not in {tenants} (known: {known})")
    kafka, topics = state.connection()
    try:
        topic = topics.sis(profile.tenant_id)
    except TopicError as error:
        raise CliFailure(str(error)) from None
    options = backfill.Options(
        file=file,
        tenant=tenant,
        fmt=fmt,  # type: ignore[arg-type]  # checked above
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        batch_id=batch_id,
        recorded_at=recorded_at,
        max_message_bytes=max_message_bytes,
        batch_size=batch_size,
        resume=resume,
        checkpoint=checkpoint,
    )
    return backfill.run(options, profile=profile, bootstrap=kafka, topic=topic)


# ---------------------------------------------------------------------------- ledger


@app.command(epilog=EPILOG)
def published(  # noqa: PLR0917 - typer maps parameters to options
    tenant: Annotated[str, typer.Option(help="the tenant")],
    targets_file: TargetsFileOption = None,
    target: Annotated[str | None, typer.Option(help="one target's documents")] = None,
    ctid: Annotated[str | None, typer.Option(help="one definition, by CTID")] = None,
    learner: Annotated[
        str | None, typer.Option(help="one learner, by learner key (person:<SIS id>)")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="only documents in this state (repeatable): " + ", ".join(DOCUMENT_STATES)
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="most documents shown")] = 200,
    as_json: JsonOption = False,
) -> int:
    """What publish delivered (or holds back), per document and target: state, version,
    content hash, remote id, last outcome, or what it waits for."""
    from cayg_ops import ledger_view  # noqa: PLC0415 - see the imports
    from cayg_publish.domain.projection import DocumentState  # noqa: PLC0415

    view = _load_view(targets_file)
    try:
        states = [DocumentState(s) for s in state] if state else None
    except ValueError as error:
        raise CliFailure(f"--state: {error}") from None
    try:
        items = asyncio.run(
            ledger_view.published(
                view,
                tenant=tenant,
                target=target,
                ctid=ctid,
                learner=learner,
                states=states,
                limit=limit,
            )
        )
    except ledger_view.LedgerViewError as error:
        raise CliFailure(str(error)) from None
    if as_json:
        print(ledger_view.dumps(items))
        return EXIT_OK
    console = _console()
    console.print(f"{len(items)} document(s)")
    table = _table(
        "target", "kind", "subject", "state", "last outcome", "hash", "waiting for / error"
    )
    for item in items:
        row = item.as_json()
        table.add_row(
            str(row["target"]),
            str(row["kind"]),
            str(row["subject"])[:60],
            str(row["state"]),
            str(row.get("last_outcome") or ""),
            str(row.get("content_hash") or "")[:12],
            str(row.get("waiting_for") or row.get("last_error") or "")[:120],
        )
    console.print(table)
    return EXIT_OK


@app.command(epilog=EPILOG)
def reconcile(  # noqa: PLR0917 - typer maps parameters to options
    tenant: Annotated[str, typer.Option(help="the tenant")],
    targets_file: TargetsFileOption = None,
    target: Annotated[str | None, typer.Option(help="only this target")] = None,
    dry_run: Annotated[bool, typer.Option(help="count, mark nothing")] = False,
    wait: Annotated[float, typer.Option(min=0, help="seconds to watch the projector")] = 120.0,
    check_targets: Annotated[
        bool,
        typer.Option(help="first read the targets back and report (and resend) drift"),
    ] = True,
    as_json: JsonOption = False,
) -> int:
    """Mark every document of a tenant dirty; running publish instances re-render them and
    send only what differs from what the target holds. First the targets are read back
    (CLR/OB listing; registry graphs against credential/format): what a target holds
    otherwise than the ledger believes is reported as drift and sent again. Reports what
    changed."""
    from cayg_ops import ledger_view  # noqa: PLC0415 - see the imports

    view = _load_view(targets_file)

    def progress(pending: int) -> None:
        print(f"  {pending} document(s) still to deliver", file=sys.stderr)

    try:
        result = asyncio.run(
            ledger_view.reconcile(
                view,
                tenant=tenant,
                target=target,
                dry_run=dry_run,
                wait_s=wait,
                progress=progress,
                check_targets=check_targets,
            )
        )
    except ledger_view.LedgerViewError as error:
        raise CliFailure(str(error)) from None
    status = EXIT_NOT_OK if result.pending and not dry_run else EXIT_OK
    if as_json:
        _print_json(
            {
                "dry_run": dry_run,
                "marked": result.marked,
                "by_target": dict(result.by_target),
                "changed": dict(result.changed),
                "pending": result.pending,
                "states": {k: dict(v) for k, v in result.states.items()},
                "drift": [
                    {
                        "target": d.target,
                        "document": d.document.key,
                        "remote_id": d.remote_id,
                        "problem": d.problem,
                    }
                    for d in result.drift
                ],
            }
        )
        return status
    if check_targets:
        print(f"drift: {len(result.drift)} document(s) differ at their target")
        for d in result.drift:
            print(f"  {d.target} {d.document.kind.value} {d.remote_id or ''}: {d.problem}")
    if dry_run:
        print(f"dry run: {result.marked} known document(s) would be re-rendered")
        for name, count in sorted(result.by_target.items()):
            print(f"  {name}: {count}")
        return EXIT_OK
    print(f"{result.marked} document(s) marked dirty")
    for name, count in sorted(result.by_target.items()):
        states = ", ".join(f"{n} {s}" for s, n in sorted(result.states.get(name, {}).items()))
        print(
            f"  {name}: {count} marked, {result.changed.get(name, 0)} changed at the target; "
            f"now {states}"
        )
    if result.pending:
        print(
            f"{result.pending} document(s) still dirty or failing after {wait:.0f} s "
            "(is publish running? see cayg status)"
        )
    return status


# ---------------------------------------------------------------------------- config


@config_app.command("check", epilog=EPILOG)
def config_check(
    tenants: TenantsOption = Path(DEFAULT_TENANTS_FILE),
    targets_file: TargetsFileOption = None,
    topics_config: Annotated[
        Path | None, typer.Option(help="also check a topics file (deploy/config/topics.toml)")
    ] = None,
    as_json: JsonOption = False,
) -> int:
    """Check the tenant registry and the publish targets file as the services do at start:
    schema, secrets resolvable, each issuer's signing key belongs to the issuer, URLs,
    directories, and that every tenant with targets is registered (its registry account
    publishing for its own organization). Exit 0 when all is well, 2 otherwise."""
    from cayg_ops import topic_setup  # noqa: PLC0415 - see the imports
    from cayg_publish.config_check import check_targets_file  # noqa: PLC0415
    from cayg_shared.config_check import check_tenants_file  # noqa: PLC0415

    registry, problems = check_tenants_file(tenants)
    checked = [str(tenants)]
    if targets_file is not None:
        _, found = check_targets_file(targets_file, tenants=registry)
        problems += found
        checked.append(str(targets_file))
    if topics_config is not None:
        problems += topic_setup.TopicsConfig.load(topics_config)[1]
        checked.append(str(topics_config))
    status = EXIT_USAGE if problems else EXIT_OK
    if as_json:
        _print_json({"checked": checked, "problems": [p.as_json() for p in problems]})
        return status
    for problem in problems:
        print(problem)
    print(
        f"{len(problems)} problem(s) in {', '.join(checked)}"
        if problems
        else f"configuration OK: {', '.join(checked)}"
    )
    return status


# ---------------------------------------------------------------------------- topics


def _topics_plan(
    state: State, config_path: Path, tenants_path: Path, replication_factor: int | None
) -> tuple[topic_setup.TopicsConfig, Topics, list[str], list[topic_setup.TopicSpec]]:
    from cayg_ops import topic_setup  # noqa: PLC0415 - see the imports
    from cayg_shared.config_check import check_tenants_file  # noqa: PLC0415

    config, problems = topic_setup.TopicsConfig.load(config_path)
    registry, tenant_problems = check_tenants_file(tenants_path)
    if config is None or registry is None:
        first: Problem = (problems or tenant_problems)[0]
        raise CliFailure(str(first))
    _, topics = state.connection()
    names = list(registry.tenants)
    specs = topic_setup.plan(config, topics, names, replication_factor=replication_factor)
    return config, topics, names, specs


ConfigOption = Annotated[
    Path, typer.Option("--config", help="topics file: partitions, retention, principals")
]


@topics_app.command("apply", epilog=EPILOG)
def topics_apply(  # noqa: PLR0917 - typer maps parameters to options
    ctx: typer.Context,
    config: ConfigOption = Path(DEFAULT_TOPICS_CONFIG),
    tenants: TenantsOption = Path(DEFAULT_TENANTS_FILE),
    replication_factor: Annotated[
        int | None,
        typer.Option(min=1, help="override the file's (1 for a single-node development broker)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="show what would be created")] = False,
    alter: Annotated[
        bool,
        typer.Option(help="on existing topics, raise partitions and set configured settings"),
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """Create every topic cayg-sync uses — pipeline, dead letters (with their retention set
    explicitly), the DLQ actions log (compacted), one sis.events.<tenant> per tenant — and
    report existing topics that differ from the file. Then list the ACLs to grant."""
    from cayg_ops import topic_setup  # noqa: PLC0415 - see the imports

    state = _state(ctx)
    plan_config, topics, names, specs = _topics_plan(state, config, tenants, replication_factor)

    async def work() -> list[topic_setup.TopicResult]:
        kafka, _ = await state.reach()
        try:
            return await topic_setup.apply(kafka, specs, dry_run=dry_run, alter=alter)
        except topic_setup.TopicSetupError as error:
            raise CliFailure(str(error)) from None

    results = _run(state, work)
    needed = topic_setup.acls(plan_config, topics, names)
    problems = [r for r in results if r.action in ("failed", "differs")]
    status = EXIT_NOT_OK if problems else EXIT_OK
    if as_json:
        _print_json(
            {"topics": [r.as_json() for r in results], "acls": [a.as_json() for a in needed]}
        )
        return status
    console = _console()
    table = _table("topic", "partitions", "replicas", "settings", "result", title="topics")
    for result in results:
        spec = result.spec
        settings = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
        text: str = result.action
        if result.differences:
            text += ": " + "; ".join(result.differences)
        if result.error:
            text += f": {result.error}"
        table.add_row(spec.name, str(spec.partitions), str(spec.replication_factor), settings, text)
    console.print(table)
    if any(r.action == "differs" for r in results):
        console.print("existing topics differ from the file: --alter changes them")
    console.print("ACLs to grant (cayg topics acls --commands prints kafka-acls.sh lines):")
    _print_acls(console, needed)
    return status


def _print_acls(console: Console, needed: Sequence[topic_setup.Acl]) -> None:
    table = _table("principal", "for", "operations", "resource", "pattern")
    for acl in needed:
        table.add_row(
            acl.principal,
            acl.who,
            ", ".join(acl.operations),
            f"{acl.resource_type} {acl.resource}",
            acl.pattern,
        )
    console.print(table)


@topics_app.command("acls", epilog=EPILOG)
def topics_acls(
    ctx: typer.Context,
    config: ConfigOption = Path(DEFAULT_TOPICS_CONFIG),
    tenants: TenantsOption = Path(DEFAULT_TENANTS_FILE),
    commands: Annotated[
        bool, typer.Option("--commands", help="kafka-acls.sh command lines to run")
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """The ACLs each service principal, each tenant's SIS principal and the operator need
    (no Kafka connection: computed from the files)."""
    from cayg_ops import topic_setup  # noqa: PLC0415 - see the imports

    state = _state(ctx)
    plan_config, topics, names, _ = _topics_plan(state, config, tenants, None)
    needed = topic_setup.acls(plan_config, topics, names)
    if as_json:
        _print_json([acl.as_json() for acl in needed])
    elif commands:
        print('A="--bootstrap-server $BOOTSTRAP --command-config admin.properties"')
        for acl in needed:
            print(f"kafka-acls.sh $A --add {acl.command()}")
    else:
        _print_acls(_console(), needed)
    return EXIT_OK


# ---------------------------------------------------------------------------- demo


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def demo(ctx: typer.Context) -> int:
    """The local demo stack: cayg demo up|down|feed|fault (cayg demo --help)."""
    from cayg_ops import demo as demo_stack  # noqa: PLC0415 - heavy imports only when asked

    return demo_stack.main(list(ctx.args))


# ---------------------------------------------------------------------------- entry


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cayg``: the exit status (see :data:`EXIT_CODES`)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = "cayg " + " ".join(a for a in arguments[:2] if not a.startswith("-"))
    try:
        result = app(args=arguments, prog_name="cayg", standalone_mode=False)
    except CliFailure as failure:
        print(f"{command.strip()}: {failure}", file=sys.stderr)
        return failure.status
    except NoArgsIsHelpError as shown:
        print(shown.ctx.get_help() if shown.ctx else "", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as error:
        hint = f" (try {error.ctx.command_path} --help)" if error.ctx else ""
        print(f"{command.strip()}: {error.format_message()}{hint}", file=sys.stderr)
        return EXIT_USAGE
    except typer.TyperException as error:
        print(f"{command.strip()}: {error.format_message()}", file=sys.stderr)
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        print(f"{command.strip()}: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        if os.environ.get("CAYG_DEBUG"):
            raise
        print(
            f"{command.strip()}: unexpected {type(error).__name__}: {str(error)[:300]} "
            "(CAYG_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_NOT_OK
    return result if isinstance(result, int) else EXIT_OK


__all__ = ["EXIT_CODES", "app", "main"]
