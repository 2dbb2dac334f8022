"""Commands that read workflow files without running them: ``list``, ``validate``, ``graph``, ``schema``."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from wtflow.cli.options import EXIT_CODES_HELP
from wtflow.errors import UsageError


def load_workflow(path: Path | None, workflow: str | None) -> Any:
    """The workflow ``workflow`` (or the only one) of the file at ``path`` (or of this directory)."""
    from wtflow import loader

    file = loader.find_file(path)
    selected = loader.select(loader.load_file(file), workflow, file)
    # What is loaded now lives for the whole command: keep the garbage collector from walking it.
    gc.freeze()
    return selected


@click.command("list", epilog="\b\nExample:\n  wtflow list examples/ci.yml")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def list_(path: Path | None) -> None:
    """List the workflows in PATH and their nodes, as a tree."""
    from wtflow import loader

    file = loader.find_file(path)
    for workflow in loader.load_file(file):
        click.echo(f"{workflow.name}  ({len(workflow.user_nodes)} nodes, {file})")
        # A graph-form file's implicit root is not the user's: its nodes are listed at the top.
        for top in workflow.root.children if workflow.implicit_root else [workflow.root]:
            _print_tree(top, "  ")


def _print_tree(node: Any, indent: str) -> None:
    from wtflow.model import Command

    executable = node.executable
    if executable is None:
        kind = "group" + (", parallel" if node.parallel else "")
    elif isinstance(executable, Command):
        kind = "command" + (", parallel children" if node.parallel else "")
    else:
        kind = f"function {executable.name}"
    needs = f", needs {', '.join(node.needs)}" if node.needs else ""
    click.echo(f"{indent}{node.name}  [{kind}{needs}]")
    for child in node.children:
        _print_tree(child, indent + "  ")


@click.command(epilog="\b\nExample:\n  wtflow validate wtflow.yml ci/*.yml\n\n" + EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(paths: Sequence[Path]) -> None:
    """Check workflow files without running anything (default: this directory's)."""
    from wtflow import loader
    from wtflow.errors import WorkflowError

    failed = False
    targets: list[Path | None] = list(paths) or [None]
    for path in targets:
        try:
            file = loader.find_file(path)
            workflows = loader.load_file(file)
        except WorkflowError as exc:
            click.echo(str(exc), err=True)
            failed = True
            continue
        for workflow in workflows:
            click.echo(f"{file}: ok: workflow {workflow.name!r}, {len(workflow.user_nodes)} nodes")
    if failed:
        sys.exit(UsageError.exit_code)


@click.command(epilog="\b\nExamples:\n  wtflow graph > graph.mmd\n  wtflow graph --format dot | dot -Tsvg > graph.svg")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("-w", "--workflow", envvar="WTFLOW_WORKFLOW", help="Which workflow of the file.")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def graph(path: Path | None, workflow: str | None, fmt: str) -> None:
    """Print the workflow's graph as Mermaid or Graphviz DOT."""
    from wtflow.graph import dot, mermaid

    loaded = load_workflow(path, workflow)
    click.echo(mermaid(loaded) if fmt == "mermaid" else dot(loaded), nl=False)


@click.command(epilog="\b\nExample (VS Code, YAML extension):\n  wtflow schema > .wtflow/schema.json\n"
              '  # then in settings: "yaml.schemas": {".wtflow/schema.json": "wtflow.yml"}')  # fmt: skip
def schema() -> None:
    """Print the JSON Schema of workflow files, for editors and validators."""
    from wtflow.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
