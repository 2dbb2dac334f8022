"""Starting database writer processes (see :mod:`wtflow.db.writer`), with nothing heavy imported.

The writer takes 0.05 s to start and import its driver, and connecting can take longer (a
remote PostgreSQL, a first run creating the database). ``wtflow run`` therefore starts one
*spare* writer on its first line, before the CLI's own imports (:func:`start_spare`); the recorder
hands it the database URL once the configuration is known. A spare nobody takes is stopped,
and one whose runner died ends by itself: it reads end-of-file where it waits for its URL.
"""

from __future__ import annotations

import subprocess
import sys

_spare: subprocess.Popen[bytes] | None = None


def start() -> subprocess.Popen[bytes]:
    """A new writer process, waiting on its stdin for the database to open."""
    # A session of its own: Ctrl-C in a terminal reaches the runner, which then closes the pipe.
    return subprocess.Popen(
        [sys.executable, "-m", "wtflow.db.writer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )


def start_spare() -> subprocess.Popen[bytes]:
    """Start a writer now, for a run whose database is not known yet (once: then the same one)."""
    global _spare  # noqa: PLW0603 - one spare per process, taken or stopped by the recorder
    if _spare is None:
        _spare = start()
    return _spare


def take_spare() -> subprocess.Popen[bytes] | None:
    """The spare writer, if one was started and not taken yet; it is the caller's from now on."""
    global _spare
    spare, _spare = _spare, None
    return spare
