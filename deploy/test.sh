#!/usr/bin/env bash
# The test command: sets everything up, then runs every test tier against real parts
# (a Kafka broker started from Maven Central jars, real HTTP servers, SQLite and PostgreSQL).
# Extra arguments go to pytest, e.g. `deploy/test.sh -m unit` or `deploy/test.sh -k ledger`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash deploy/setup.sh

set +e
uv run --frozen pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "deploy/test.sh: pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
