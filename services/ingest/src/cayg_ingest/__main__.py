"""``cayg-ingest``: run the ingest service until SIGTERM."""

from __future__ import annotations

from cayg_ingest.app import create_app
from cayg_ingest.settings import IngestSettings
from cayg_shared.logging import configure_logging
from cayg_shared.service import serve


def main() -> None:
    """Read settings from the environment, log JSON, serve."""
    settings = IngestSettings()
    configure_logging("ingest", level=settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
