#!/usr/bin/env bash
# The test command (README, CI): install everything the suite needs, then run it.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# The report test renders the HTML report in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null; then
  echo "installing Chromium for the report test" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

# The integration tier needs the PostgreSQL server these machines run on 127.0.0.1:5432.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; trying to start it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# Two processes, each running whole test files (their session fixtures — a broker, a server — per
# process); the slowest tests are listed at the end.
exec .venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 "$@"
