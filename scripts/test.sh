#!/usr/bin/env bash
# Set up and run the whole test suite: lint, format check, pytest.
# Installs ffmpeg (ffprobe), Chromium and PostgreSQL for the MP4, browser and database checks when it can
# (root + apt-get); without them those checks skip, unless HAPPYHORSE_REQUIRE_ALL=1 (as in CI) makes them fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
if ! command -v ffprobe >/dev/null || ! command -v chromium >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg chromium postgresql >/dev/null
  else
    echo "note: ffprobe/chromium/postgresql missing and not root: their checks will skip" >&2
  fi
fi
# PostgreSQL: start Debian's cluster and a role that may create the tests' throwaway databases
if [ -z "${HAPPYHORSE_TEST_POSTGRES:-}" ] && [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null; then
  read -r pg_version pg_cluster _ < <(pg_lsclusters -h | head -n 1) || true
  if [ -n "${pg_version:-}" ] && pg_ctlcluster "$pg_version" "$pg_cluster" start >/dev/null 2>&1 || pg_lsclusters -h | grep -q online; then
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'hh_test'\"" | grep -q 1 ||
      su postgres -c "psql -qc \"CREATE ROLE hh_test LOGIN PASSWORD 'hh_test' CREATEDB\""
    export HAPPYHORSE_TEST_POSTGRES="postgresql+psycopg://hh_test:hh_test@127.0.0.1/postgres"
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
