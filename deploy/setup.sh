#!/usr/bin/env bash
# Installs everything cayg-sync needs on a fresh Debian machine, idempotently:
# uv, the Python workspace (locked), Apache Kafka's jars from Maven Central, and
# PostgreSQL server binaries for the ledger tests. Safe to run again; fast when done.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv (from PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi

say "syncing the Python workspace from uv.lock"
uv sync --frozen --quiet

say "fetching Apache Kafka jars (Maven Central) if not cached"
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  say "installing Java 17 and Maven (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi
bash deploy/kafka/kafka.sh fetch

if [ "${CAYG_SKIP_POSTGRES:-}" != "1" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing PostgreSQL server (Debian) for the ledger tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ "${CAYG_SKIP_PROMETHEUS:-}" != "1" ] && ! command -v promtool >/dev/null 2>&1; then
  say "installing Prometheus and promtool (Debian) for the alert and dashboard tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
say "ready"
