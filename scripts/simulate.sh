#!/usr/bin/env bash
# The main job: a simulated campus with the real daemon and panel (mock GPIO, simulated camera,
# temp state dir, the local broker on 127.0.0.1:1883 when one is running).
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=0 bash scripts/bootstrap.sh
exec .venv/bin/entry-buzzer simulate "$@"
