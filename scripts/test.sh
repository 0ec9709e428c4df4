#!/usr/bin/env bash
# The test command: installs what it needs, runs ruff and mypy, then the whole suite
# (real Mosquitto brokers started by the suite, real headless Chromium, systemd-analyze).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p test-artifacts
# Lint and types first (fast, and a failure names the line): ruff with the rules in pyproject.toml,
# mypy (strict for the core, journal, events and the facade), the import contract (lint-imports).
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
