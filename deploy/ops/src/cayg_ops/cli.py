"""``cayg`` — the operator CLI.

    cayg status                       consumer lag per service and DLQ depth
    cayg dlq list [--stage S]         parked messages with their reasons
    cayg dlq replay [--stage S] [--reason R] [--yes]
                                      send parked messages back to where they came from
    cayg backfill FILE --tenant T [--resume]
                                      feed historic awards/definitions (CSV or JSONL)
    cayg published --tenant T [--target N] [--ctid C] [--learner K] [--state S] [--json]
                                      what publish delivered (or holds back) per document
    cayg reconcile --tenant T [--target N] [--dry-run]
                                      re-render every document of a tenant; report changes
    cayg demo up|down|status          the local demo stack

Kafka is reached at ``--bootstrap`` (default ``$CAYG_KAFKA_BOOTSTRAP`` or 127.0.0.1:19092,
the demo broker).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from cayg_ops import backfill, kafka_view, ledger_view
from cayg_publish.domain.projection import DocumentState
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import TopicError, Topics

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
STAGES = ("ingest", "normalize", "publish")
DEFAULT_TENANTS_FILE = "deploy/config/tenants.json"


def _dlq_topic(topics: Topics, stage: str) -> str:
    return {
        "ingest": topics.ingest_dlq,
        "normalize": topics.normalize_dlq,
        "publish": topics.publish_dlq,
    }[stage]


async def _status(bootstrap: str, topics: Topics, targets_file: Path | None) -> int:
    lags = await kafka_view.consumer_lag(bootstrap)
    print("consumer lag")
    for lag in lags:
        print(f"  {lag.group:<24} {lag.lag:>8} messages behind over {lag.partitions} partitions")
    print("dead-letter queues")
    for stage in STAGES:
        depth = await kafka_view.topic_depth(bootstrap, _dlq_topic(topics, stage))
        print(f"  {stage:<24} {depth:>8} parked")
    if targets_file is None:
        print("publish documents: (give --targets-file or set CAYG_PUBLISH_TARGETS_FILE)")
        return 0
    counts = await ledger_view.document_counts(ledger_view.TargetsView.load(targets_file))
    print("publish documents (target, tenant: state [reason] count)")
    for target, tenant, state, reason, count in counts:
        why = f" [{reason}]" if reason else ""
        print(f"  {target:<28} {tenant:<18} {state}{why}: {count}")
    return 0


def _targets_file(args: argparse.Namespace) -> Path:
    if args.targets_file is None:
        raise ledger_view.LedgerViewError(
            "no publish targets file: give --targets-file or set CAYG_PUBLISH_TARGETS_FILE"
        )
    path: Path = args.targets_file
    return path


async def _published(args: argparse.Namespace) -> int:
    view = ledger_view.TargetsView.load(_targets_file(args))
    states = [DocumentState(s) for s in args.state] if args.state else None
    items = await ledger_view.published(
        view,
        tenant=args.tenant,
        target=args.target,
        ctid=args.ctid,
        learner=args.learner,
        states=states,
        limit=args.limit,
    )
    if args.json:
        print(ledger_view.dumps(items))
        return 0
    print(f"{len(items)} document(s)")
    for item in items:
        row = item.as_json()
        line = f"  {row['target']:<26} {row['kind']:<16} {row['subject'][:48]:<48} {row['state']}"
        if row.get("last_outcome"):
            line += f"  last {row['last_outcome']}, hash {str(row.get('content_hash'))[:12]}"
        if row.get("waiting_for"):
            line += f"  waiting for {row['waiting_for']}"
        if row.get("last_error"):
            line += f"  error: {str(row['last_error'])[:100]}"
        print(line)
    return 0


async def _reconcile(args: argparse.Namespace) -> int:
    view = ledger_view.TargetsView.load(_targets_file(args))

    def progress(pending: int) -> None:
        print(f"  {pending} document(s) still to deliver", file=sys.stderr)

    result = await ledger_view.reconcile(
        view,
        tenant=args.tenant,
        target=args.target,
        dry_run=args.dry_run,
        wait_s=args.wait,
        progress=progress,
    )
    if args.dry_run:
        print(f"dry run: {result.marked} known document(s) would be re-rendered")
        for name, count in sorted(result.by_target.items()):
            print(f"  {name}: {count}")
        return 0
    print(f"{result.marked} document(s) marked dirty")
    for name, count in sorted(result.by_target.items()):
        states = ", ".join(f"{n} {s}" for s, n in sorted(result.states.get(name, {}).items()))
        print(
            f"  {name}: {count} marked, {result.changed.get(name, 0)} changed at the target; "
            f"now {states}"
        )
    if result.pending:
        print(
            f"{result.pending} document(s) still dirty or failing after {args.wait:.0f} s "
            "(is publish running? see cayg status)"
        )
        return 1
    return 0


async def _dlq_list(bootstrap: str, topics: Topics, stages: Sequence[str], limit: int) -> int:
    for stage in stages:
        parked = await kafka_view.read_parked(bootstrap, _dlq_topic(topics, stage), limit=limit)
        print(f"{stage}: {len(parked)} parked")
        for item in parked:
            if item.letter is None:
                print(f"  @{item.partition}:{item.offset}  (not a dead-letter record)")
                continue
            letter = item.letter
            where = f" at {letter.field_path}" if letter.field_path else ""
            print(
                f"  @{item.partition}:{item.offset}  {letter.reason}{where}: {letter.detail[:160]}"
                f"  [from {letter.source.topic}@{letter.source.partition}:{letter.source.offset}]"
            )
    return 0


async def _dlq_replay(
    bootstrap: str, topics: Topics, stages: Sequence[str], reason: str | None, yes: bool
) -> int:
    chosen: list[kafka_view.ParkedMessage] = []
    for stage in stages:
        parked = await kafka_view.read_parked(bootstrap, _dlq_topic(topics, stage), limit=100_000)
        chosen.extend(
            p for p in parked if p.letter and (reason is None or p.letter.reason == reason)
        )
    if not chosen:
        print("nothing to replay")
        return 0
    if not yes:
        print(f"{len(chosen)} message(s) would be replayed; add --yes to do it")
        return 1
    sent = await kafka_view.replay(bootstrap, chosen, topics)
    for _item, target in sent:
        print(f"  replayed to {target}")
    print(f"{len(sent)} replayed (the DLQ keeps its copy; replays are idempotent)")
    return 0


def _backfill(args: argparse.Namespace, topics: Topics) -> int:
    try:
        registry = TenantRegistry.load(args.tenants)
    except OSError as error:
        print(
            f"cayg backfill: cannot read the tenant registry {args.tenants}: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    except ValidationError as error:
        print(
            f"cayg backfill: {args.tenants} is not a valid tenant registry: "
            f"{error.error_count()} problem(s)",
            file=sys.stderr,
        )
        return 2
    profile = registry.get(args.tenant)
    if profile is None:
        known = ", ".join(registry.tenants) or "none"
        print(
            f"cayg backfill: tenant {args.tenant!r} is not in {args.tenants} (known: {known})",
            file=sys.stderr,
        )
        return 2
    try:
        topic = topics.sis(profile.tenant_id)
    except TopicError as error:
        print(f"cayg backfill: {error}", file=sys.stderr)
        return 2
    options = backfill.Options(
        file=args.file,
        tenant=args.tenant,
        fmt=args.fmt,
        dry_run=args.dry_run,
        skip_invalid=args.skip_invalid,
        batch_id=args.batch_id,
        recorded_at=args.recorded_at,
        max_message_bytes=args.max_message_bytes,
        batch_size=args.batch_size,
        resume=args.resume,
        checkpoint=args.checkpoint,
    )
    return backfill.run(options, profile=profile, bootstrap=args.bootstrap, topic=topic)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_backfill(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "backfill",
        help="feed historic awards/definitions (CSV or JSONL) through ingest",
        description="Check every row of FILE, then produce them as backfill records to "
        "sis.events.<tenant>, in chunks, keeping a checkpoint after each acknowledged one. "
        "Re-running the same file sends the same event ids; --resume goes on where an "
        "interrupted run stopped.",
    )
    parser.add_argument("file", type=Path, help="CSV or JSONL file (see deploy/ops/README.md)")
    parser.add_argument("--tenant", required=True, help="the tenant the rows belong to")
    parser.add_argument(
        "--format", dest="fmt", choices=("csv", "jsonl"), help="default: from the file name"
    )
    parser.add_argument("--dry-run", action="store_true", help="check the rows, send nothing")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="send the valid rows even if some are not"
    )
    parser.add_argument(
        "--batch-id", help="the run's id (default: from the file's content); a new one re-keys"
    )
    parser.add_argument(
        "--recorded-at", help="recordedAt for rows without one (ISO 8601 date-time)"
    )
    parser.add_argument(
        "--tenants",
        type=Path,
        default=Path(os.environ.get("CAYG_TENANTS_FILE", DEFAULT_TENANTS_FILE)),
        help="tenant registry (default $CAYG_TENANTS_FILE or deploy/config/tenants.json)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_positive,
        default=backfill.SERVICE_MAX_MESSAGE_BYTES,
        help="ingest's message limit, for tenants without their own",
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=500, help="records confirmed per batch"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on after the last acknowledged batch of an interrupted run of FILE "
        "(refused when FILE or the options changed)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="where the run's progress is kept (default: "
        ".cayg/backfill/<file name>.<tenant>.<hash of its path>.json in this directory)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and --help)."""
    parser = argparse.ArgumentParser(prog="cayg", description="cayg-sync operator CLI")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CAYG_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers",
    )
    parser.add_argument("--topic-prefix", default=os.environ.get("CAYG_TOPIC_PREFIX", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="consumer lag, DLQ depth and publish documents by state")
    sub.add_parser("published", help="what publish delivered, per document")
    sub.add_parser("reconcile", help="re-render a tenant's documents and report changes")
    sub.add_parser("demo", help="the local demo stack: cayg demo up|down|fault (see --help)")

    dlq = sub.add_parser("dlq", help="inspect or replay dead letters")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list")
    listing.add_argument("--stage", choices=STAGES, action="append")
    listing.add_argument("--limit", type=int, default=50)
    replay = dlq_sub.add_parser("replay")
    replay.add_argument("--stage", choices=STAGES, action="append")
    replay.add_argument("--reason", help="only entries with this reason code")
    replay.add_argument("--yes", action="store_true", help="really send")
    _add_backfill(sub)
    targets_default = os.environ.get("CAYG_PUBLISH_TARGETS_FILE")
    for name in ("status", "published", "reconcile"):
        sub.choices[name].add_argument(
            "--targets-file",
            type=Path,
            default=Path(targets_default) if targets_default else None,
            help="publish targets file, for the ledger (default $CAYG_PUBLISH_TARGETS_FILE)",
        )
    shown = sub.choices["published"]
    shown.description = "what publish delivered (or holds back), per document"
    shown.add_argument("--tenant", required=True)
    shown.add_argument("--target", help="one target's documents")
    shown.add_argument("--ctid", help="one definition, by CTID")
    shown.add_argument("--learner", help="one learner, by learner key (person:<SIS id>)")
    shown.add_argument("--state", action="append", choices=[s.value for s in DocumentState])
    shown.add_argument("--limit", type=_positive, default=200)
    shown.add_argument("--json", action="store_true", help="JSON instead of a table")
    again = sub.choices["reconcile"]
    again.description = (
        "mark every document of a tenant dirty; running publish instances re-render them "
        "and send only what differs from what the target holds"
    )
    again.add_argument("--tenant", required=True)
    again.add_argument("--target", help="only this target")
    again.add_argument("--dry-run", action="store_true", help="count, mark nothing")
    again.add_argument("--wait", type=float, default=120.0, help="seconds to watch (default 120)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cayg``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["demo"]:
        # The demo has its own sub-commands (up, down, fault) and options.
        from cayg_ops import demo  # noqa: PLC0415 - heavy imports only when asked for

        return demo.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    topics = Topics(args.topic_prefix)
    stages: list[str] = list(getattr(args, "stage", None) or STAGES)
    try:
        if args.command == "status":
            return asyncio.run(_status(args.bootstrap, topics, args.targets_file))
        if args.command == "published":
            return asyncio.run(_published(args))
        if args.command == "reconcile":
            return asyncio.run(_reconcile(args))
        if args.command == "dlq" and args.dlq_command == "list":
            return asyncio.run(_dlq_list(args.bootstrap, topics, stages, args.limit))
        if args.command == "dlq" and args.dlq_command == "replay":
            return asyncio.run(_dlq_replay(args.bootstrap, topics, stages, args.reason, args.yes))
        if args.command == "backfill":
            return _backfill(args, topics)
    except ledger_view.LedgerViewError as error:
        print(f"cayg {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"cayg: unknown command {args.command}", file=sys.stderr)
    return 2
