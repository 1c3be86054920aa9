"""``cayg-normalize``: run the normalize service until SIGTERM."""

from __future__ import annotations

from cayg_normalize.app import create_app
from cayg_normalize.settings import NormalizeSettings
from cayg_shared.logging import configure_logging
from cayg_shared.service import serve


def main() -> None:
    """Read settings from the environment, log JSON, serve."""
    settings = NormalizeSettings()
    configure_logging("normalize", level=settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
