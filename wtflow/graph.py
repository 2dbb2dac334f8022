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

import dataclasses
import graphlib
from typing import TYPE_CHECKING

from wtflow.errors import WorkflowError

if TYPE_CHECKING:  # types only: the model builds on this module at run time
    from wtflow.model import Node, Workflow

SELF = 0
TREE = 1
Vertex = tuple[str, int]


def dependencies(workflow: Workflow) -> dict[Vertex, set[Vertex]]:
    """Every vertex of ``workflow`` mapped to the vertices it waits for."""
    deps: dict[Vertex, set[Vertex]] = {}
    for node in workflow.root.walk():
        deps[(node.name, SELF)] = set()
        deps[(node.name, TREE)] = {(node.name, SELF)} | {(child.name, TREE) for child in node.children}
    for parent in workflow.root.walk():
        for index, child in enumerate(parent.children):
            own = deps[(child.name, SELF)]
            own.add((parent.name, SELF))
            if not parent.parallel and index:
                own.add((parent.children[index - 1].name, TREE))
    for node in workflow.root.walk():
        own = deps[(node.name, SELF)]
        if node.needs:
            ancestors = set(workflow.ancestors(node.name))
            own.update((need, TREE) for need in node.needs if need not in ancestors)
        own.update((ref.node, SELF) for ref in node.reads())
    return deps


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
    deps = workflow.dependencies
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


def required(workflow: Workflow, targets: list[str]) -> set[str]:
    """The targets with everything below them, and what they need: ancestors, ``needs``, artifact producers.

    A needed node brings its whole subtree (``needs`` waits for it); an ancestor brings only itself.
    """
    chosen: set[str] = set()
    whole = list(targets)  # nodes wanted with their subtrees
    alone: list[str] = []  # ancestors: wanted without their other children
    while whole or alone:
        if whole:
            name = whole.pop()
            node = workflow.nodes[name]
            whole.extend(child.name for child in node.children if child.name not in chosen)
        else:
            name = alone.pop()
            node = workflow.nodes[name]
        if name in chosen:
            continue
        chosen.add(name)
        parent = workflow.parents[name]
        if parent is not None:
            alone.append(parent.name)
        whole.extend(node.needs)
        whole.extend(ref.node for ref in node.reads())
    return chosen


def subset(workflow: Workflow, targets: list[str]) -> Workflow:
    """The workflow cut down to ``targets`` and what they need; :class:`WorkflowError` for unknown targets."""
    import difflib  # for error messages only

    for target in targets:
        if target not in workflow.nodes:
            close = difflib.get_close_matches(target, list(workflow.nodes), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise WorkflowError(f"--target {target!r} is not a node of workflow {workflow.name!r}{hint}")
    keep = required(workflow, targets)

    def prune(node: Node) -> Node:
        children = [prune(child) for child in node.children if child.name in keep]
        return dataclasses.replace(node, children=children)

    return dataclasses.replace(workflow, root=prune(workflow.root))


def edges(workflow: Workflow) -> list[tuple[str, str, str]]:
    """``(from, to, kind)`` for every direct ordering between nodes: ``child``, ``then``, ``needs``, ``artifact``."""
    found: list[tuple[str, str, str]] = []
    for node in workflow.root.walk():
        for index, child in enumerate(node.children):
            if node.parallel or index == 0:
                found.append((node.name, child.name, "child"))
            else:
                found.append((node.children[index - 1].name, child.name, "then"))
        found.extend((need, node.name, "needs") for need in node.needs)
        found.extend((ref.node, node.name, f"artifact:{ref.name}") for ref in node.reads())
    return found


def _drawn(workflow: Workflow) -> tuple[list[str], list[tuple[str, str, list[str], bool]]]:
    """What a drawing shows: the nodes the user wrote, and one edge per pair of them.

    An edge is ``(from, to, labels, solid)``: solid when one is the other's parent or previous
    sibling, dashed when only ``needs`` or artifacts join them; its labels are ``needs`` and
    the names of the artifacts read, each once. A graph-form file's implicit root and its
    edges are left out.
    """
    names = list(workflow.user_nodes)
    shown = set(names)
    pairs: dict[tuple[str, str], tuple[list[str], bool]] = {}
    for source, target, kind in edges(workflow):
        if source not in shown or target not in shown:
            continue
        labels, solid = pairs.get((source, target), ([], False))
        label = None if kind in {"child", "then"} else kind.removeprefix("artifact:")
        if label is not None and label not in labels:
            labels.append(label)
        pairs[(source, target)] = (labels, solid or label is None)
    return names, [(source, target, labels, solid) for (source, target), (labels, solid) in pairs.items()]


def mermaid(workflow: Workflow, statuses: dict[str, str] | None = None) -> str:
    """A Mermaid flowchart of the workflow; with ``statuses``, nodes are coloured by status."""
    names, joined = _drawn(workflow)
    ids = {name: f"n{index}" for index, name in enumerate(names)}
    lines = ["flowchart TD"]
    for name in names:
        label = name.replace('"', "#quot;")
        shape = f'(["{label}"])' if workflow.nodes[name].executable is None else f'["{label}"]'
        lines.append(f"  {ids[name]}{shape}")
    for source, target, labels, solid in joined:
        text = ", ".join(labels).replace('"', "#quot;")
        arrow = "-->" if solid and not labels else f"-- {text} -->" if solid else f"-. {text} .->"
        lines.append(f"  {ids[source]} {arrow} {ids[target]}")
    if statuses:
        colours = {
            "succeeded": "fill:#d4f7d4,stroke:#1a7f37",
            "cached": "fill:#e6f7ee,stroke:#1a7f37",
            "reused": "fill:#e6f7ee,stroke:#1a7f37",
            "failed": "fill:#ffd7d5,stroke:#cf222e",
            "timed_out": "fill:#ffd7d5,stroke:#cf222e",
            "cancelled": "fill:#eeeeee,stroke:#6e7781",
            "skipped": "fill:#f6f8fa,stroke:#afb8c1",
            "running": "fill:#ddf4ff,stroke:#0969da",
            "pending": "fill:#f6f8fa,stroke:#afb8c1",
        }
        for status, style in colours.items():
            members = [ids[name] for name, value in statuses.items() if value == status and name in ids]
            if members:
                lines.append(f"  classDef {status} {style}")
                lines.append(f"  class {','.join(members)} {status}")
    return "\n".join(lines) + "\n"


def dot(workflow: Workflow) -> str:
    """A Graphviz DOT digraph of the workflow."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    names, joined = _drawn(workflow)
    lines = [f"digraph {quote(workflow.name)} {{", "  rankdir=TB;"]
    for name in names:
        shape = "box" if workflow.nodes[name].executable is not None else "folder"
        lines.append(f"  {quote(name)} [shape={shape}];")
    for source, target, labels, solid in joined:
        attributes = ([] if solid else ["style=dashed"]) + ([f"label={quote(', '.join(labels))}"] if labels else [])
        style = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {quote(source)} -> {quote(target)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
