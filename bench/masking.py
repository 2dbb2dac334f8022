"""W-figure: 10,000 mask values and 100 MiB of output masked at least at 50 MiB/s.

Builds a masker of 10,000 secret-like values and passes 100 MiB of log-like output through it
in pipe-sized chunks, as a node attempt's ``OutputWriter`` does (``scan`` for ``::add-mask::``
lines, then ``bytes``), with a secret in one line of every thousand. Then the worst way to
announce values: 10,000 ``::add-mask::`` lines, each in its own chunk, so the masker learns one
value per chunk. Prints MiB/s and seconds; exits 1 if masking is slower than the W-figure.
Usage: python bench/masking.py [MIB] [VALUES]
"""

from __future__ import annotations

import os
import sys
import time

from wtflow.executors.pipes import CHUNK
from wtflow.masking import Masker

GOAL = 50.0  # MiB/s


def secret(n: int) -> bytes:
    return b"ghp_%08d%s" % (n, os.urandom(12).hex().encode())


def output(size: int, values: list[bytes]) -> list[bytes]:
    """About ``size`` bytes of log lines in chunks of ``CHUNK``; every thousandth line holds a secret."""
    lines = []
    total = n = 0
    while total < size:
        line = b"2026-12-06T08:31:12.%06dZ INFO step %d of the build: compiled module wtflow.part%d ok\n" % (n, n, n)
        if n % 1000 == 0:
            line = line[:-1] + b" token=" + values[n % len(values)] + b"\n"
        lines.append(line)
        total += len(line)
        n += 1
    data = b"".join(lines)
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def main(mib: int, count: int) -> int:
    values = [secret(n) for n in range(count)]
    masker = Masker(values)
    chunks = output(mib << 20, values)
    size = sum(map(len, chunks))
    masked = 0
    start = time.perf_counter()
    for chunk in chunks:
        masker.scan(chunk)
        masked += masker.bytes(chunk).count(b"***")
    seconds = time.perf_counter() - start
    rate = size / (1 << 20) / seconds
    print(
        f"masking: {count:,} values, {size / (1 << 20):.0f} MiB in {seconds:.2f} s: {rate:.0f} MiB/s ({masked:,} masked)"
    )

    announcing = Masker()
    start = time.perf_counter()
    for value in values:
        line = b"::add-mask::" + value + b"\n"
        announcing.scan(line)
        announcing.bytes(line)
    seconds = time.perf_counter() - start
    print(f"announcing {count:,} values one chunk each: {seconds:.2f} s")
    if rate < GOAL:
        print(f"slower than the W-figure ({GOAL:g} MiB/s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, int(sys.argv[2]) if len(sys.argv) > 2 else 10_000))
