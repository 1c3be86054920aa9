#!/usr/bin/env bash
# Installs everything cayg-sync needs on a fresh Debian machine, idempotently:
# uv, the Python workspace (locked), Apache Kafka's jars from Maven Central, and
# PostgreSQL server binaries for the ledger tests. Safe to run again; fast when done.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# Debian packages: as root directly, else through sudo, else say what to install.
apt_updated=""
apt_install() {
  local run=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then run=(sudo); else
      say "please install these Debian packages (as root): $*"; exit 1
    fi
  fi
  if [ -z "$apt_updated" ]; then "${run[@]}" apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv (from PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi

say "syncing the Python workspace from uv.lock"
uv sync --frozen --quiet

say "fetching Apache Kafka jars (Maven Central) if not cached"
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  say "installing Java 17 and Maven (Debian)"
  apt_install openjdk-17-jdk-headless maven
fi
bash deploy/kafka/kafka.sh fetch

if [ "${CAYG_SKIP_POSTGRES:-}" != "1" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing PostgreSQL server (Debian) for the ledger tests"
  apt_install postgresql
fi
if [ "${CAYG_SKIP_PROMETHEUS:-}" != "1" ] && ! command -v promtool >/dev/null 2>&1; then
  say "installing Prometheus and promtool (Debian) for the alert and dashboard tests"
  apt_install prometheus
fi
if [ "${CAYG_SKIP_BROWSER:-}" != "1" ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  say "installing chromium and chromium-driver (Debian) for the console's browser test"
  apt_install chromium chromium-driver
fi
if [ "${CAYG_SKIP_DEPLOY_TOOLS:-}" != "1" ]; then
  # The deployment tests render deploy/k8s with kubectl kustomize and verify the systemd units.
  if ! command -v kubectl >/dev/null 2>&1; then
    say "installing kubectl (Debian kubernetes-client) for the manifest tests"
    apt_install kubernetes-client
  fi
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    say "installing systemd-analyze (Debian systemd) for the unit tests"
    apt_install systemd
  fi
fi
say "ready"
