"""``cayg-campaign``: run a campaign (see :mod:`cayg_campaign.cli`)."""

from __future__ import annotations

from cayg_campaign.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
