"""Run a command on a pseudo-terminal and answer its prompts, like a person typing (VM test).

usage: python3 answer.py 'REGEX=ANSWER' ... -- COMMAND ...

Each time the output matches the next REGEX, ANSWER and a newline are typed (a prompt that
reads the terminal, such as getpass, flushes anything typed earlier). The answers are used in
order, the last one repeats. Exit status is the command's. Standard library only.
"""
import os
import pty
import re
import sys
import time

split = sys.argv.index("--")
answers = [a.split("=", 1) for a in sys.argv[1:split]]
cmd = sys.argv[split + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
seen = b""
i = 0
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    seen += data
    if answers and re.search(answers[min(i, len(answers) - 1)][0].encode(), seen):
        time.sleep(0.3)
        os.write(fd, answers[min(i, len(answers) - 1)][1].encode() + b"\n")
        seen = b""
        i += 1
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
