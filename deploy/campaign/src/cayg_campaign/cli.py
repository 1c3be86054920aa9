"""``cayg-campaign``: run a campaign and print (and optionally write) its figures.

Exit status 0 when every zero figure is zero, 1 when a check failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from cayg_campaign import report
from cayg_campaign.processes import REPO_ROOT, InfrastructureError
from cayg_campaign.runner import Options, command_line, run
from cayg_shared.logging import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="cayg-campaign",
        description="Run the whole stack on loopback with a seeded stream, faults and "
        "hostile input, then check the end state against the stream's model.",
    )
    parser.add_argument("--seed", type=int, required=True, help="seeds the stream and faults")
    parser.add_argument("--minutes", type=float, default=5.0, help="time under faults")
    parser.add_argument("--mode", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--short", action="store_true", help="small streams, 20 kills")
    parser.add_argument(
        "--fuzz-cases", type=int, default=None, help="fuzz inputs (100000; --short: 2000)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep everything here")
    parser.add_argument(
        "--write-report",
        nargs="?",
        const=REPO_ROOT / "docs" / "RELIABILITY.md",
        type=Path,
        default=None,
        help="write the figures into this file (default docs/RELIABILITY.md)",
    )
    args = parser.parse_args(args_list)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    fuzz_cases = args.fuzz_cases if args.fuzz_cases is not None else 2000 if args.short else 100_000
    options = Options(
        seed=args.seed,
        minutes=args.minutes,
        mode=args.mode,
        short=args.short,
        fuzz_cases=fuzz_cases,
        workdir=args.workdir,
        command=command_line(args_list),
    )
    # The fuzz run drives the services' batch runners in this process: their one line per
    # batch would be most of its time and output.
    configure_logging("campaign", level="WARNING")
    try:
        result = asyncio.run(run(options))
    except InfrastructureError as error:
        print(f"cayg-campaign: {error}", file=sys.stderr)
        return 1
    print(report.figures(result))
    if args.write_report is not None:
        report.write(args.write_report, result)
    print(f"workdir: {result.workdir}")
    return 1 if result.problems else 0
