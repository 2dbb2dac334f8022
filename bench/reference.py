"""The asyncio reference runner the benchmarks compare wtflow with (about 30 lines of logic).

Runs the commands of a file (one per line) through create_subprocess_shell, at most N at once,
each job's stdout and stderr pumped through pipes in 64 KiB reads into its own files.
Usage: python reference.py COMMANDS_FILE PARALLEL OUT_DIR
"""

import asyncio
import sys
from pathlib import Path


async def pump(reader: asyncio.StreamReader, path: Path) -> None:
    with path.open("wb") as out:
        while chunk := await reader.read(65536):
            out.write(chunk)


async def job(index: int, command: str, slots: asyncio.Semaphore, out_dir: Path) -> int:
    async with slots:
        process = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None and process.stderr is not None
        await asyncio.gather(
            pump(process.stdout, out_dir / f"{index}.out"), pump(process.stderr, out_dir / f"{index}.err")
        )
        return await process.wait()


async def main(commands: list[str], parallel: int, out_dir: Path) -> int:
    slots = asyncio.Semaphore(parallel)
    codes = await asyncio.gather(*(job(i, c, slots, out_dir) for i, c in enumerate(commands)))
    return max(codes, default=0)


if __name__ == "__main__":
    lines = Path(sys.argv[1]).read_text().splitlines()
    out = Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main(lines, int(sys.argv[2]), out)))
