"""A module whose import prints, takes its time or hangs, as the importing process's environment says.

Imported by the tests themselves it does nothing; a function node's process imports it with the
node's ``env``: ``WTFLOW_TEST_IMPORT_SAYS`` is printed to stdout (and, marked, to stderr), the
process's pid is written to ``WTFLOW_TEST_IMPORT_PID_FILE``, then the import sleeps
``WTFLOW_TEST_IMPORT_SLEEP`` seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if says := os.environ.get("WTFLOW_TEST_IMPORT_SAYS"):
    print(says, flush=True)
    print(f"{says} (stderr)", file=sys.stderr, flush=True)
if pid_file := os.environ.get("WTFLOW_TEST_IMPORT_PID_FILE"):
    Path(pid_file).write_text(str(os.getpid()))
time.sleep(float(os.environ.get("WTFLOW_TEST_IMPORT_SLEEP", "0")))


def says_hello() -> str:
    print("hello")
    return "done"


def says_hello_then_sleeps() -> None:
    """Print at once, then sleep far past any timeout of the tests."""
    print("hello", flush=True)
    time.sleep(30)
