"""``python -m tests.front_daemon STATE_DIR unix:SOCKET_PATH``: the real daemon, as production runs
it behind nginx (``web.listen = "unix"``), on the simulated campus's mock GPIO and camera.

``tls:PORT:CERT:KEY`` instead serves HTTPS directly with cheroot, the old front, to show that
the same attacks took the panel down before nginx (EB_FRONT_DIRECT=1 in tests/test_web_front.py).

Used by tests/support_front.py so the attack tests measure the daemon's own process (RSS) and
drive it only through the front. Prints the generated admin password like ``simulate`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from controller import config as cfg
from controller.simulate import SIM_GPIO
from entry_buzzer.simulation import run_simulation


def main(state_dir: str, listen: str) -> int:
    kind, _, where = listen.partition(":")
    if kind == "unix":
        web = {"enabled": True, "listen": "unix", "socket_path": where}
    else:
        port, cert, key = where.split(":")
        web = {"enabled": True, "listen": "tcp", "host": "127.0.0.1", "port": int(port),
               "tls_cert_file": cert, "tls_key_file": key}
    settings = cfg.with_overrides(
        cfg.Settings(), gpio=SIM_GPIO,
        camera={"kind": "simulated", "width": 160, "height": 120},
        storage={"state_dir": Path(state_dir)}, mqtt={"enabled": False}, web=web)
    errors = cfg._cross_checks(settings, {})
    assert not errors, errors
    return run_simulation(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
