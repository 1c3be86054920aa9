"""``python -m cayg_bench``: run the benchmark harness."""

from __future__ import annotations

import sys

from cayg_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
