#!/usr/bin/python3
"""VM test agent (installed only in the test image, never by install.sh).

Runs bash scripts sent by the host over the virtio-serial port "rig" and answers with their
output and exit status, one JSON object per line. Started at boot by vmrig-agent.service, so the
host notices a reboot by a new boot id in the greeting. No network, no login, no pty needed.
"""
import json
import os
import signal
import subprocess
import threading
import time

PORT = "/dev/virtio-ports/rig"


def main() -> None:
    while not os.path.exists(PORT):
        time.sleep(0.5)
    fd = os.open(PORT, os.O_RDWR)
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()

    lock = threading.Lock()

    def send(obj: dict) -> None:
        data = (json.dumps(obj) + "\n").encode()
        with lock:
            while data:
                data = data[os.write(fd, data):]

    def execute(req: dict) -> None:
        proc = subprocess.Popen(["bash", "-c", req["script"]], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=req.get("timeout", 600))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            rc = -999
        send({"id": req["id"], "rc": rc, "out": out.decode("utf-8", "replace")})

    send({"hello": boot})
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:                      # the host is not connected: wait for it
            time.sleep(0.2)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                req = json.loads(line)
            except ValueError:
                continue
            if "ping" in req:
                send({"hello": boot})
                continue
            # each request in its own thread: a long check never blocks a look from the host
            threading.Thread(target=execute, args=(req,), daemon=True).start()


if __name__ == "__main__":
    main()
