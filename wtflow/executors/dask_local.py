"""What the worker processes of a ``--dask-local`` cluster run first: a Dask preload (``dask_setup``).

Those processes are children of the runner, in its process group: Ctrl-C in a terminal sends
SIGINT to each of them as well as to the runner. The runner stops the nodes and then the
cluster, which ends its workers; a worker that took the signal itself would end mid-way with a
``KeyboardInterrupt`` and print its traceback among the run's last lines. Nodes a worker starts
are unaffected: a Python handler, unlike ``SIG_IGN``, does not pass to a program it executes,
and its node processes have sessions of their own.
"""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Leave SIGINT to the runner: this worker process ends when the runner closes the cluster."""
    signal.signal(signal.SIGINT, _leave_to_the_runner)


def _leave_to_the_runner(_signum: int, _frame: Any) -> None:
    """The terminal's Ctrl-C, which the runner also received and acts on."""
