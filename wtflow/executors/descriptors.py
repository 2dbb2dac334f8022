"""Room in this process's descriptor table for the nodes of a run, made in one step before they start."""

from __future__ import annotations

import fcntl
import os
import resource

from wtflow.model import Workflow

# Descriptors a running node holds: two pipes' read ends, a pidfd and two artifact files.
FDS_PER_NODE = 5


def reserve_descriptors(count: int) -> None:
    """Make room in this process's descriptor table for ``count`` more descriptors, in one step.

    Linux grows the table by doubling as descriptors are opened, and in a process with threads
    each growth waits for an RCU grace period (``synchronize_rcu``): a burst of nodes starting
    together would wait for several, in the middle of their ``pipe()`` calls. One growth up
    front, to ``count`` above the lowest free descriptor (never past the open-files limit),
    costs one grace period at most, and none in a single-threaded process. The table never
    shrinks; its size costs 8 bytes a descriptor.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = fd + count if soft == resource.RLIM_INFINITY else min(fd + count, soft - 1)
        if target > fd:
            # F_DUPFD takes the lowest free descriptor >= target: it never replaces an open one.
            os.close(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, target))
    except OSError:  # no room after all: the table grows as it is used, as it would have
        pass
    finally:
        os.close(fd)


def make_room(workflow: Workflow, max_parallel: int) -> None:
    """Room for every node of ``workflow`` that can run at once, best made before the loop has worker threads."""
    running = min(max_parallel, sum(node.executable is not None for node in workflow.nodes.values()))
    reserve_descriptors(FDS_PER_NODE * running)
