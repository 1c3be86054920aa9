"""``cayg-publish``: run the publish service until SIGTERM."""

from __future__ import annotations

from cayg_publish.app import create_app
from cayg_publish.settings import PublishSettings
from cayg_shared.logging import configure_logging
from cayg_shared.service import serve


def main() -> None:
    """Read settings from the environment, log JSON, serve."""
    settings = PublishSettings()
    configure_logging("publish", level=settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
