"""``cayg-console``: serve the operator console until SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from cayg_ops.console.app import create_app
from cayg_ops.console.settings import ConsoleSettings
from cayg_shared.logging import configure_logging
from cayg_shared.settings import ConnectionSettings, settings_table

_USAGE = """usage: cayg-console

The cayg-sync operator console: pipeline health per service and lane, consumer lag from
committed offsets, dead letters with filters and an authenticated replay, and what publish
holds for each tenant and target. Configured only through the environment:
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Read settings from the environment, log JSON, serve."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(_USAGE)
        for cls in (ConsoleSettings, ConnectionSettings):
            for name, default, meaning in settings_table(cls):
                print(f"  {name:<42} {default:<24} {meaning}")
        return
    if args:
        print(f"cayg-console: unexpected argument {args[0]!r} (see --help)", file=sys.stderr)
        sys.exit(2)
    try:
        settings = ConsoleSettings()
        connection = ConnectionSettings()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"cayg-console: invalid setting {where}: {first['msg']}", file=sys.stderr)
        sys.exit(2)
    configure_logging("console")
    uvicorn.run(
        create_app(settings, connection),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
