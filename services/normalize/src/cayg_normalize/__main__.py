"""``cayg-normalize``: run the normalize service until SIGTERM (``--help`` lists its
settings)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cayg_normalize.app import create_app
from cayg_normalize.settings import NormalizeSettings
from cayg_shared.startup import ServiceEntry, run_service, tenant_problems

ENTRY = ServiceEntry(
    name="normalize",
    summary="Maps each envelope of cayg.ingested.v1 into the shared incremental-credential "
    "schema and writes the changes to cayg.normalized.v1 — or, with a reason, to "
    "cayg.normalize.dlq.v1. Stateless: scale it by adding instances.",
    settings=NormalizeSettings,
    check=tenant_problems,
    create_app=create_app,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Check, connect, serve; exit with the status :func:`run_service` documents."""
    sys.exit(run_service(ENTRY, argv))


if __name__ == "__main__":
    main()
