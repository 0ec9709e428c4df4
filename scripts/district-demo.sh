#!/usr/bin/env bash
# Optional extra: the district demo. Installs what it needs (PostgreSQL included, through
# scripts/bootstrap.sh), then runs N simulated campuses (default 3), a private district broker and
# PostgreSQL, the recorder and the district board: entry-buzzer simulate --district N.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=0 bash scripts/bootstrap.sh
campuses="${1:-3}"
[ $# -gt 0 ] && shift
exec .venv/bin/entry-buzzer simulate --district "$campuses" "$@"
