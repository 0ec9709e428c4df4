#!/usr/bin/env bash
# The benchmark suite: a private Mosquitto, the real daemon on simulated pins and camera, raw
# baselines measured in the same run. Prints a markdown table and JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=0 bash scripts/bootstrap.sh
if [ "${1:-}" = district ]; then   # the district load bench (PostgreSQL, recorder): bench/district_load.py
  shift
  exec .venv/bin/python -m bench.district_load "$@"
fi
exec .venv/bin/python -m bench "$@"
