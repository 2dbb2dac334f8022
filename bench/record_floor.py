"""The least a run that keeps its record can write for W9: the machine's floor, measured in the same run.

A wtflow run keeps each node's stdout and stderr in a directory of its own, a cache hit too
(its replayed output becomes the run's artifacts). This makes those directories and empty
files for N nodes, and nothing else: no sources checked, no events, no database. doit and Task
write nothing on a no-op, so beside W9's no-op re-runs this shows how much of wtflow's time
the record alone takes on this machine's file system.
Usage: python record_floor.py OUT_DIR N
"""

import sys
from pathlib import Path


def main(out_dir: Path, count: int) -> int:
    out_dir.mkdir(parents=True)
    for index in range(count):
        node_dir = out_dir / f"t{index}"
        node_dir.mkdir()
        for name in ("stdout.log", "stderr.log"):
            (node_dir / name).touch()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
