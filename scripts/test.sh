#!/usr/bin/env bash
# The test command: installs what it needs, then runs the whole suite
# (real Mosquitto brokers started by the suite, real headless Chromium, systemd-analyze).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p test-artifacts
exec .venv/bin/python -m pytest "$@"
