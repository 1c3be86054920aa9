#!/usr/bin/env bash
# The main job on one machine: sets everything up, starts a local Kafka broker, the
# Credential Registry and CLR host stand-ins and the three services, feeds a sample SIS
# stream from three institutions, waits until the pipeline is idle and prints a summary
# (with the operator console's URL, http://127.0.0.1:8090).
#
#   bash deploy/demo.sh          set up and run (everything keeps running afterwards)
#   bash deploy/demo.sh stop     stop everything it started
#   bash deploy/demo.sh fault --outage 30    break the registry stand-in for 30 s
#   bash deploy/demo.sh feed --learners 60   feed more (new learners and a catalog revision)
#                                            and watch the registry lane retry and recover
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
case "${1:-up}" in
  stop|down) exec uv run --frozen python -m cayg_ops.demo down ;;
  fault|feed) exec uv run --frozen python -m cayg_ops.demo "$@" ;;
  up) shift || true ;;
  *) ;;
esac
CAYG_SKIP_POSTGRES=1 CAYG_SKIP_PROMETHEUS=1 CAYG_SKIP_BROWSER=1 CAYG_SKIP_DEPLOY_TOOLS=1 \
  bash deploy/setup.sh
exec uv run --frozen python -m cayg_ops.demo up "$@"
