#!/bin/sh
# Check the door installation: stop the controller (its ExecStopPost relocks the strike),
# run `entry-buzzer selftest` as the service user, and start the controller again.
# Installed as /opt/entry-buzzer/bin/selftest. Usage: sudo /opt/entry-buzzer/bin/selftest [--no-strike]
set -eu
was_active=0
if systemctl is-active --quiet entry-buzzer.service; then
  was_active=1
  echo "stopping entry-buzzer for the selftest ..."
  systemctl stop entry-buzzer.service
fi
restart() { if [ "$was_active" = 1 ]; then echo "starting entry-buzzer again ..."; systemctl start entry-buzzer.service; fi; }
trap restart EXIT
cd /var/lib/entry-buzzer
# lgpio writes its notification FIFOs to the working directory (LG_WD): the state dir is writable.
# The service's own pin factory (its unit with drop-ins: lgpio on a Pi, mock on a test system).
factory=$(systemctl show -p Environment --value entry-buzzer.service 2>/dev/null | tr ' ' '\n' \
  | sed -n 's/^GPIOZERO_PIN_FACTORY=//p' | tail -n 1)
runuser -u entry-buzzer -- env LG_WD=/var/lib/entry-buzzer GPIOZERO_PIN_FACTORY="${factory:-lgpio}" \
  /opt/entry-buzzer/venv/bin/entry-buzzer selftest --config /etc/entry-buzzer/config.toml "$@"
