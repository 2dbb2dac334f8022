"""The least a Python runner can do for W7: the machine's floor, measured in the same run.

Starts each command (one per line, split at spaces, found on PATH once) with posix_spawn, at
most N at once, with its stdout and stderr pumped through pipes into its own files, and waits
for all of them: no shell, no asyncio, no events, no database. W7's target is an absolute
time, so how close a machine lets anyone get to it is worth knowing beside wtflow's.
Usage: python floor.py COMMANDS_FILE PARALLEL OUT_DIR
"""

import os
import selectors
import shutil
import sys
from pathlib import Path


def main(commands: list[list[str]], parallel: int, out_dir: Path) -> int:
    found = {argv[0]: shutil.which(argv[0]) or argv[0] for argv in commands}
    selector = selectors.DefaultSelector()
    waiting = list(reversed(list(enumerate(commands))))
    running = worst = 0
    while waiting or selector.get_map():
        while waiting and running < parallel:
            index, argv = waiting.pop()
            out_read, out_write = os.pipe()
            err_read, err_write = os.pipe()
            pid = os.posix_spawn(
                found[argv[0]],
                argv,
                os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, out_write, 1), (os.POSIX_SPAWN_DUP2, err_write, 2)],
                setsid=True,
            )
            os.close(out_write)
            os.close(err_write)
            for fd, suffix in ((out_read, "out"), (err_read, "err")):
                selector.register(fd, selectors.EVENT_READ, open(out_dir / f"{index}.{suffix}", "wb"))  # noqa: SIM115
            selector.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
            running += 1
        for key, _ in selector.select():
            if isinstance(key.data, int):  # a pidfd: the process ended
                _, status = os.waitpid(key.data, 0)
                worst = max(worst, os.waitstatus_to_exitcode(status))
                running -= 1
            elif data := os.read(key.fd, 1 << 16):
                key.data.write(data)
                continue
            else:
                key.data.close()
            selector.unregister(key.fd)
            os.close(key.fd)
    return worst


if __name__ == "__main__":
    lines = Path(sys.argv[1]).read_text().splitlines()
    out = Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(main([line.split() for line in lines], int(sys.argv[2]), out))
