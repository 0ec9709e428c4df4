"""malloc tuning: panel sign-ins (scrypt, 16 MB each, on server threads) must not pin memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import hashlib, os, sys, threading
sys.path.insert(0, {root!r})
from controller.memory import tune_malloc
if {tune}:
    assert tune_malloc()
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
def login():
    hashlib.scrypt(b'pw', salt=b's' * 16, n=2 ** 14, r=8, p=1, maxmem=64 * 2 ** 20, dklen=32)
login()
before = rss()
for _ in range(4):
    t = threading.Thread(target=login)
    t.start()
    t.join()
print(rss() - before)
"""


def growth(tune: bool) -> int:
    code = SCRIPT.format(root=str(Path(__file__).parents[1]), tune=tune)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_sign_ins_on_threads_do_not_pin_memory():
    assert growth(tune=True) < 8 * 2 ** 20


def test_without_tuning_they_do():
    """The control: proves the measurement can see the problem the tuning fixes."""
    assert growth(tune=False) > 16 * 2 ** 20
