"""``cayg-standins``: run the registry or CLR stand-in, or reset their state.

Examples::

    cayg-standins registry --port 9001 --data-dir var/registry \\
        --api-key 0123...=ce-a588a18b-2616-4c74-bdcd-6507c0693d0e --admin-token-file tok
    cayg-standins clr --port 9002 --data-dir var/clr --client demo:secret \\
        --trusted-key https://example.edu/issuers/1#key-1=<hex or z6Mk... multibase>
    cayg-standins static --port 9003 --root var/web   # institutions' domains on loopback
    cayg-standins reset --data-dir var/registry

Secrets (API keys, client secrets, the admin token) may also come from the environment:
``CAYG_STANDINS_API_KEYS`` (``KEY=ORG[,ORG];KEY=ORG``), ``CAYG_STANDINS_CLIENTS``
(``ID:SECRET;ID:SECRET``) and ``CAYG_STANDINS_ADMIN_TOKEN``. They are never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import uvicorn

from cayg_standins.clr.app import ClrConfig, create_clr_app
from cayg_standins.clr.oauth import OAuthClient
from cayg_standins.clr.store import DB_FILE as CLR_DB
from cayg_standins.clr.store import ClrStore
from cayg_standins.conformance import ConformanceDataMissingError
from cayg_standins.faults import FaultPlan
from cayg_standins.registry.app import RegistryConfig, create_registry_app
from cayg_standins.registry.store import DB_FILE as REGISTRY_DB
from cayg_standins.registry.store import RegistryStore
from cayg_standins.static import StaticConfig, create_static_app
from cayg_standins.web import DEFAULT_MAX_BODY_BYTES, configure_logging

__all__ = ["build_parser", "main"]

_LOG = logging.getLogger("cayg_standins.cli")


def _fault_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fault injection (also at run time: /_admin/faults)")
    group.add_argument("--seed", type=int, default=0, help="seed of the fault decisions")
    group.add_argument(
        "--error-rate",
        action="append",
        default=[],
        metavar="STATUS=P",
        help="answer STATUS with probability P (repeatable), e.g. 503=0.3",
    )
    group.add_argument("--latency-ms", type=int, default=0, help="delay added to each request")
    group.add_argument("--rate-limit-rate", type=float, default=0.0, help="probability of 429")
    group.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429")
    group.add_argument(
        "--timeout-after-write-rate",
        type=float,
        default=0.0,
        help="probability that a request is applied, then its response held back",
    )
    group.add_argument(
        "--timeout-after-write-delay",
        type=float,
        default=30.0,
        help="seconds the response is held back",
    )
    group.add_argument("--outage", type=float, default=0.0, help="503 everything for N seconds")
    group.add_argument("--fault-path-prefix", default="", help="only fault paths with this prefix")


def _common_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=default_port, help="port (0 = any free)")
    parser.add_argument("--data-dir", type=Path, required=True, help="SQLite state directory")
    parser.add_argument(
        "--conformance-dir",
        type=Path,
        default=None,
        help="shared conformance data (default: <repo>/../shared/conformance)",
    )
    parser.add_argument("--public-base-url", default=None, help="base URL in generated links")
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the admin token (else $CAYG_STANDINS_ADMIN_TOKEN; none = admin off)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    _fault_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="cayg-standins",
        description="Local stand-ins for the Credential Registry and CLR hosts",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    registry = commands.add_parser("registry", help="run the Registry Assistant API stand-in")
    _common_arguments(registry, 9001)
    registry.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY=ORGCTID[,ORGCTID]",
        help="an API key and the organizations it may publish for (repeatable)",
    )
    registry.add_argument("--base-path", default="/assistant/", help="Assistant API base path")
    registry.add_argument(
        "--registered-elsewhere",
        action="append",
        default=[],
        metavar="CTID",
        help=(
            "an organization CTID to accept in references although it is not published "
            "here (registered by another account; repeatable; also "
            "$CAYG_STANDINS_REGISTERED_CTIDS, separated by ';')"
        ),
    )

    clr = commands.add_parser("clr", help="run the CLR 2.0 / OB 3.0 host stand-in")
    _common_arguments(clr, 9002)
    clr.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ID:SECRET[:SCOPE ...]",
        help="an OAuth client; scopes (space separated) default to all (repeatable)",
    )
    clr.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="VERIFICATION_METHOD=KEY",
        help="trust a proof key: 64 hex digits or a z6Mk... multibase (repeatable)",
    )
    clr.add_argument(
        "--rewrite",
        action="append",
        default=[],
        metavar="PREFIX=URL",
        help=(
            "fetch issuer documents (did:web, https issuers) under PREFIX from URL instead, "
            "e.g. https://northfield.example/=http://127.0.0.1:9003/northfield.example/ "
            "(repeatable)"
        ),
    )
    clr.add_argument("--token-ttl", type=int, default=300, help="access token lifetime (s)")
    clr.add_argument("--refresh-ttl", type=int, default=86_400, help="refresh token lifetime (s)")

    static = commands.add_parser(
        "static", help="serve a directory as the institutions' web hosts (/<host>/<path>)"
    )
    static.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    static.add_argument("--port", type=int, default=9003, help="port (0 = any free)")
    static.add_argument("--root", type=Path, required=True, help="directory with one per host")

    reset = commands.add_parser("reset", help="clear the state kept in a data directory")
    reset.add_argument("--data-dir", type=Path, required=True)
    return parser


def _fault_plan(args: argparse.Namespace) -> FaultPlan:
    rates: dict[int, float] = {}
    for item in args.error_rate:
        status, sep, rate = item.partition("=")
        if not sep:
            raise ValueError(f"--error-rate {item!r}: expected STATUS=P")
        rates[int(status)] = float(rate)
    return FaultPlan(
        seed=args.seed,
        error_rates=rates,
        latency_ms=args.latency_ms,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_s=args.retry_after,
        timeout_after_write_rate=args.timeout_after_write_rate,
        timeout_after_write_delay_s=args.timeout_after_write_delay,
        outage_s=args.outage,
        path_prefix=args.fault_path_prefix,
    )


def _admin_token(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    if args.admin_token_file is not None:
        return Path(args.admin_token_file).read_text(encoding="utf-8").strip() or None
    return env.get("CAYG_STANDINS_ADMIN_TOKEN") or None


def parse_api_keys(items: Sequence[str]) -> dict[str, frozenset[str]]:
    """``KEY=ORG,ORG`` items -> key -> organizations."""
    keys: dict[str, set[str]] = {}
    for item in items:
        key, sep, orgs = item.partition("=")
        if not sep or not orgs:
            raise ValueError("--api-key expects KEY=ORGCTID[,ORGCTID]")
        keys.setdefault(key.strip(), set()).update(o.strip() for o in orgs.split(",") if o.strip())
    return {key: frozenset(orgs) for key, orgs in keys.items()}


def parse_clients(items: Sequence[str]) -> dict[str, OAuthClient]:
    """``ID:SECRET[:SCOPES]`` items -> OAuth clients."""
    clients: dict[str, OAuthClient] = {}
    for item in items:
        parts = item.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError("--client expects ID:SECRET[:SCOPE ...]")
        scopes = frozenset(parts[2].replace(",", " ").split()) if len(parts) == 3 else frozenset()
        clients[parts[0]] = OAuthClient(parts[0], parts[1], scopes)
    return clients


def parse_rewrites(items: Sequence[str]) -> dict[str, str]:
    """``PREFIX=URL`` items -> prefix -> replacement."""
    rewrites: dict[str, str] = {}
    for item in items:
        prefix, sep, url = item.partition("=")
        if not sep or not prefix or not url:
            raise ValueError("--rewrite expects PREFIX=URL")
        rewrites[prefix] = url
    return rewrites


def parse_trusted_keys(items: Sequence[str]) -> dict[str, bytes]:
    """``VERIFICATION_METHOD=KEY`` items (KEY hex or multibase) -> raw public keys."""
    from cayg_signing import public_key_from_multibase  # noqa: PLC0415

    keys: dict[str, bytes] = {}
    for item in items:
        method, sep, value = item.rpartition("=")
        if not sep or not method:
            raise ValueError("--trusted-key expects VERIFICATION_METHOD=KEY")
        value = value.strip()
        keys[method] = (
            public_key_from_multibase(value) if value.startswith("z") else bytes.fromhex(value)
        )
    return keys


def _serve(app: object, host: str, port: int) -> None:
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None)  # type: ignore[arg-type]
    uvicorn.Server(config).run()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``cayg-standins``."""
    args = build_parser().parse_args(argv)
    environ = os.environ if env is None else env
    configure_logging()
    try:
        if args.command == "reset":
            data_dir: Path = args.data_dir
            if (data_dir / REGISTRY_DB).exists():
                RegistryStore(data_dir).reset()
            if (data_dir / CLR_DB).exists():
                ClrStore(data_dir).reset()
            _LOG.info("reset", extra={"fields": {"data_dir": str(data_dir)}})
            return 0
        if args.command == "static":
            _LOG.info("starting", extra={"fields": {"standin": "static", "port": args.port}})
            _serve(create_static_app(StaticConfig(root=args.root)), args.host, args.port)
            return 0
        plan = _fault_plan(args)
        admin_token = _admin_token(args, environ)
        if args.command == "registry":
            env_keys = [k for k in environ.get("CAYG_STANDINS_API_KEYS", "").split(";") if k]
            registry_config = RegistryConfig(
                data_dir=args.data_dir,
                api_keys=parse_api_keys([*args.api_key, *env_keys]),
                conformance_dir=args.conformance_dir,
                base_path=args.base_path,
                public_base_url=args.public_base_url,
                admin_token=admin_token,
                faults=plan,
                max_body_bytes=args.max_body_bytes,
                registered_elsewhere=frozenset(
                    [
                        *args.registered_elsewhere,
                        *(
                            c.strip()
                            for c in environ.get("CAYG_STANDINS_REGISTERED_CTIDS", "").split(";")
                            if c.strip()
                        ),
                    ]
                ),
            )
            app = create_registry_app(registry_config)
        else:
            env_clients = [c for c in environ.get("CAYG_STANDINS_CLIENTS", "").split(";") if c]
            clr_config = ClrConfig(
                data_dir=args.data_dir,
                clients=parse_clients([*args.client, *env_clients]),
                conformance_dir=args.conformance_dir,
                trusted_keys=parse_trusted_keys(args.trusted_key),
                rewrites=parse_rewrites(args.rewrite),
                token_ttl_s=args.token_ttl,
                refresh_ttl_s=args.refresh_ttl,
                public_base_url=args.public_base_url,
                admin_token=admin_token,
                faults=plan,
                max_body_bytes=args.max_body_bytes,
            )
            app = create_clr_app(clr_config)
    except (ConformanceDataMissingError, ValueError, OSError) as exc:
        print(f"cayg-standins: {exc}", file=sys.stderr)
        return 2
    _LOG.info(
        "starting",
        extra={"fields": {"standin": args.command, "host": args.host, "port": args.port}},
    )
    _serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
