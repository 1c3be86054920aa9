"""``python -m cayg_ops`` / ``cayg``."""

from __future__ import annotations

import sys

from cayg_ops.cli import main as _main


def main() -> None:
    """Run the operator CLI and exit with its status."""
    sys.exit(_main())


if __name__ == "__main__":
    main()
