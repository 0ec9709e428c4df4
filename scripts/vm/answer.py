"""Run a command on a pseudo-terminal and answer its prompts, like a person typing (VM test).

usage: python3 answer.py 'REGEX=ANSWER' ... -- COMMAND ...

Each time the output since the last answer matches a REGEX, its ANSWER and a newline are typed
(a prompt that reads the terminal, such as getpass, flushes anything typed earlier). Exit status
is the command's; a command still running after ANSWER_TIMEOUT seconds (180) is killed.
"""
import os
import pty
import re
import select
import signal
import sys
import time

split = sys.argv.index("--")
answers = [a.split("=", 1) for a in sys.argv[1:split]]
cmd = sys.argv[split + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
seen = b""
deadline = time.monotonic() + float(os.environ.get("ANSWER_TIMEOUT", "180"))
while time.monotonic() < deadline:
    if not select.select([fd], [], [], 1)[0]:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    seen += data
    for pattern, answer in answers:
        if re.search(pattern.encode(), seen):
            time.sleep(0.3)
            os.write(fd, answer.encode() + b"\n")
            seen = b""
            break
else:
    print("\nanswer.py: still running at the deadline (ANSWER_TIMEOUT): killed", flush=True)
    os.kill(pid, signal.SIGKILL)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
