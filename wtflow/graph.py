"""The order a workflow runs in, derived from its tree, ``needs`` and artifact references.

Each node has two vertices: ``(name, SELF)`` is done when its own executable finished, and
``(name, TREE)`` when it and everything below it finished. A node starts when every vertex it
depends on is done:

- its parent's SELF (a node runs, then its children);
- in a sequential parent, the previous sibling's TREE (each child with all under it first);
- the TREE of every node it ``needs`` (an ancestor is already waited for);
- the SELF of every node whose artifact it reads.
"""

from __future__ import annotations

import graphlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wtflow.model import Workflow

SELF = 0
TREE = 1
Vertex = tuple[str, int]


def dependencies(workflow: Workflow) -> dict[Vertex, set[Vertex]]:
    """Every vertex of ``workflow`` mapped to the vertices it waits for."""
    from wtflow.model import PyFunc

    deps: dict[Vertex, set[Vertex]] = {}
    parents = workflow.parents
    for node in workflow.root.walk():
        own: set[Vertex] = set()
        parent = parents[node.name]
        if parent is not None:
            own.add((parent.name, SELF))
            if not parent.parallel:
                index = next(i for i, child in enumerate(parent.children) if child is node)
                if index:
                    own.add((parent.children[index - 1].name, TREE))
        ancestors = _ancestors(workflow, node.name)
        for need in node.needs:
            if need not in ancestors:
                own.add((need, TREE))
        if isinstance(node.executable, PyFunc):
            own.update((ref.node, SELF) for ref in node.executable.artifacts())
        deps[(node.name, SELF)] = own
        deps[(node.name, TREE)] = {(node.name, SELF)} | {(child.name, TREE) for child in node.children}
    return deps


def _ancestors(workflow: Workflow, name: str) -> set[str]:
    found: set[str] = set()
    parent = workflow.parents[name]
    while parent is not None:
        found.add(parent.name)
        parent = workflow.parents[parent.name]
    return found


def find_cycle(deps: dict[Vertex, set[Vertex]]) -> list[str] | None:
    """The node names along a dependency cycle, first name repeated at the end; ``None`` if acyclic."""
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as exc:
        vertices: list[Vertex] = exc.args[1]
        names: list[str] = []
        for name, _ in reversed(vertices):  # graphlib lists the cycle against the edges' direction
            if not names or names[-1] != name:
                names.append(name)
        if len(names) == 1 or names[0] != names[-1]:
            names.append(names[0])
        return names
    return None


def stages(workflow: Workflow) -> list[list[str]]:
    """Nodes with executables grouped by the earliest wave they could start in (for plans and graphs)."""
    deps = dependencies(workflow)
    sorter = graphlib.TopologicalSorter(deps)
    sorter.prepare()
    position = {name: index for index, name in enumerate(workflow.nodes)}
    waves: list[list[str]] = []
    while sorter.is_active():
        ready = sorter.get_ready()
        names = [name for name, kind in ready if kind == SELF and workflow.nodes[name].executable is not None]
        if names:
            waves.append(sorted(names, key=position.__getitem__))
        sorter.done(*ready)
    return waves
