#!/usr/bin/env bash
# Set up and run the whole test suite: lint, format check, pytest.
# Installs ffmpeg (ffprobe) and Chromium for the MP4 and browser checks when it can (root + apt-get);
# without them those checks skip, unless HAPPYHORSE_REQUIRE_ALL=1 (as in CI) makes them fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
if ! command -v ffprobe >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg chromium >/dev/null
  else
    echo "note: ffprobe/chromium missing and not root: their checks will skip" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
