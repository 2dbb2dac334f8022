"""W8's floor for any runner that keeps wtflow's promise about its database, measured in the same run.

A wtflow run starts no node before its database has answered that it is reachable and its
schema current (README: exit 3, "checked before any node runs"), and the database writer that
answers imports SQLAlchemy first. This starts that writer as ``wtflow run`` does (on its first
line), waits for its answer on a SQLite file beside OUT_DIR, then runs the asyncio reference
(bench/reference.py) and ends the writer: the reference's time plus the wait no such runner can
avoid. No workflow is read, no event recorded, nothing printed to a console.
Usage: python database_floor.py COMMANDS_FILE PARALLEL OUT_DIR (as bench/reference.py)
"""

import sys
from pathlib import Path

from wtflow.db import writer_process

writer_process.start_spare()  # first, as wtflow.entry does: its start overlaps this process's imports

import asyncio  # noqa: E402 - after the writer's start, on purpose

import reference  # noqa: E402


async def main(commands: list[str], parallel: int, out_dir: Path) -> int:
    writer = await writer_process.WriterProcess.open(f"sqlite:///{out_dir.parent / 'wtflow.db'}", 0.0)
    try:
        return await reference.main(commands, parallel, out_dir)
    finally:
        await writer.aclose(0.0)


if __name__ == "__main__":
    lines = Path(sys.argv[1]).read_text().splitlines()
    out = Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main(lines, int(sys.argv[2]), out)))
