#!/usr/bin/env bash
# The intercom benchmark: the real daemon (in-process for latencies, as its own process for CPU
# and RSS), Debian's Chromium with fake media devices as the office, a private Mosquitto.
# Prints a markdown table and JSON (--json FILE to save it; --smoke for tiny n).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m bench.intercom "$@"
