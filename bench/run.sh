#!/usr/bin/env bash
# The benchmark harness: bash bench/run.sh [--tiny|--quick] [--out FILE] [--doc FILE] …
# (uv run python -m cayg_bench --help lists every option). Results go to JSON and to a
# generated docs/BENCHMARKS.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export PYTHONPATH="$repo/bench${PYTHONPATH:+:$PYTHONPATH}"
exec uv run --frozen python -m cayg_bench "$@"
