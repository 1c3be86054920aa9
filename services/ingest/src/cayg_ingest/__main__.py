"""``cayg-ingest``: run the ingest service until SIGTERM (``--help`` lists its settings)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cayg_ingest.app import create_app
from cayg_ingest.settings import IngestSettings
from cayg_shared.startup import ServiceEntry, run_service, tenant_problems

ENTRY = ServiceEntry(
    name="ingest",
    summary="Reads every sis.events.<tenant> topic, admits each SIS message (tenant from the "
    "topic, size and shape limits, format) and writes it, in its envelope, to "
    "cayg.ingested.v1 — or, with a reason, to cayg.ingest.dlq.v1.",
    settings=IngestSettings,
    check=tenant_problems,
    create_app=create_app,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Check, connect, serve; exit with the status :func:`run_service` documents."""
    sys.exit(run_service(ENTRY, argv))


if __name__ == "__main__":
    main()
