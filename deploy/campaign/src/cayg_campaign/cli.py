"""The ``cayg-campaign`` command line."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run a campaign (filled in by the runner)."""
    del argv
    return 2
