"""Boot the test VM under QEMU and run the installed-system checks through its agent.

Called by scripts/vm-test.sh with a run directory holding disk.img, vmlinuz and initrd.img.
The guest's agent (scripts/vm/agent.py) runs each bash script sent over the virtio-serial
port and answers with output and exit status. Every check prints PASS/FAIL with its output;
the exit status is 0 only if all passed. Standard library only (host python3).
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import CHECKS, PRELUDE  # noqa: E402

BOOT_TIMEOUT = 600          # TCG on a busy 2-core machine: generous


class Agent:
    """JSON lines over QEMU's unix socket for the guest's virtio-serial port."""

    def __init__(self, path: Path, log):
        self.log = log
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.lines: queue.Queue = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    self.lines.put(json.loads(line))
                except ValueError:
                    pass

    def send(self, obj: dict) -> None:
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def wait_boot(self, old_boot: str | None, timeout: float) -> str | None:
        """Ping until an agent from a boot other than old_boot answers; its boot id."""
        deadline = time.monotonic() + timeout
        last_ping = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - last_ping > 5:
                self.send({"ping": 1})
                last_ping = time.monotonic()
            try:
                msg = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if msg.get("hello") and msg["hello"] != old_boot:
                self._drain()
                return msg["hello"]
        return None

    def _drain(self) -> None:
        time.sleep(0.5)
        while not self.lines.empty():
            self.lines.get_nowait()

    def run(self, script: str, timeout: float = 600) -> tuple[int, str]:
        self.next_id += 1
        rid = self.next_id
        self.send({"id": rid, "script": PRELUDE + "\n" + script, "timeout": timeout})
        deadline = time.monotonic() + timeout + 60
        while time.monotonic() < deadline:
            try:
                msg = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if msg.get("id") == rid:
                return msg["rc"], msg["out"]
        return -998, f"no answer from the guest within {timeout + 60:.0f} s"


def kvm_works(run: Path) -> bool:
    """A short probe: does a KVM guest get as far as printing the kernel banner? (It hangs on some hosts.)"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    probe = run / "kvm-probe.log"
    proc = subprocess.Popen(["qemu-system-x86_64", "-enable-kvm", "-m", "256", "-display", "none",
                             "-no-reboot", "-kernel", str(run / "vmlinuz"), "-append", "console=ttyS0 panic=-1",
                             "-serial", f"file:{probe}", "-monitor", "none", "-nic", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if probe.exists() and b"Linux version" in probe.read_bytes():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.5)
        return False
    finally:
        proc.kill()
        proc.wait()


def start_qemu(run: Path, kvm: bool) -> subprocess.Popen:
    sock = run / "rig.sock"
    if sock.exists():
        sock.unlink()
    cmd = ["qemu-system-x86_64", "-m", "1536", "-smp", "2", "-display", "none", "-monitor", "none",
           "-nic", "none", "-kernel", str(run / "vmlinuz"), "-initrd", str(run / "initrd.img"),
           "-append", "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1",
           "-drive", f"file={run / 'disk.img'},format=raw,if=virtio",
           "-serial", f"file:{run / 'console.log'}",
           "-device", "virtio-serial",
           "-chardev", f"socket,path={sock},server=on,wait=off,id=rig",
           "-device", "virtserialport,chardev=rig,name=rig",
           "-device", "virtio-rng-pci"]
    if kvm:
        cmd[1:1] = ["-enable-kvm", "-cpu", "host"]
    proc = subprocess.Popen(cmd, stdout=open(run / "qemu.log", "ab"), stderr=subprocess.STDOUT)
    atexit.register(lambda: proc.poll() is None and proc.kill())     # never leave a VM behind
    return proc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--only", help="comma-separated check names (debugging)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))          # CI timeout: atexit kills QEMU
    run: Path = args.run
    logf = open(run / "rig.log", "a")
    t0 = time.monotonic()

    def log(msg: str) -> None:
        line = f"vm-test: [{time.monotonic() - t0:6.0f}s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    kvm = kvm_works(run)
    log(f"accelerator: {'KVM' if kvm else 'TCG (software emulation: KVM unavailable or it hangs here)'}")
    qemu = start_qemu(run, kvm)
    agent = Agent(run / "rig.sock", log)
    boot = agent.wait_boot(None, 120 if kvm else BOOT_TIMEOUT)
    if boot is None and kvm:
        log("KVM guest did not come up: falling back to TCG")
        qemu.kill()
        qemu.wait()
        kvm = False
        qemu = start_qemu(run, kvm)
        agent = Agent(run / "rig.sock", log)
        boot = agent.wait_boot(None, BOOT_TIMEOUT)
    if boot is None:
        log("FAIL: the VM did not boot (see console.log)")
        qemu.kill()
        return 1
    log(f"booted ({'KVM' if kvm else 'TCG'}) in {time.monotonic() - t0:.0f}s")

    results: list[tuple[str, str, float]] = []
    state = {"boot": boot}
    only = set(args.only.split(",")) if args.only else None
    try:
        for check in CHECKS:
            if only and check.name not in only:
                continue
            if check.needs and any(r[0] in check.needs and r[1] != "PASS" for r in results):
                results.append((check.name, "SKIP", 0.0))
                log(f"SKIP {check.name}: needs {', '.join(check.needs)}")
                continue
            log(f"---- {check.name}: {check.title}")
            t = time.monotonic()
            try:
                ok, out = check.run(agent, state, log)
            except Exception as exc:       # a broken check is a failed check, and the run goes on
                ok, out = False, f"{type(exc).__name__}: {exc}"
            dt = time.monotonic() - t
            for line in out.rstrip().splitlines():
                log(f"   {line}")
            results.append((check.name, "PASS" if ok else "FAIL", dt))
            log(f"{'PASS' if ok else 'FAIL'} {check.name} ({dt:.0f}s)")
    finally:
        agent.run("systemctl poweroff --no-block", timeout=30)
        try:
            qemu.wait(timeout=120)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
    log("summary:")
    for name, status, dt in results:
        log(f"  {status:4} {name} ({dt:.0f}s)")
    log(f"VM run {time.monotonic() - t0:.0f}s ({'KVM' if kvm else 'TCG'})")
    return 0 if results and all(r[1] == "PASS" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
