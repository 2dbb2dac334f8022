"""What a user sees of a graph-form file in the first hour: counts, lists, plans and drawings of what they wrote."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import cli
from wtflow.graph import dot, mermaid
from wtflow.loader import load_yaml
from wtflow.model import Workflow

SEVEN = """
name: build
nodes:
  - {name: fetch, command: echo fetch}
  - {name: compile, command: echo compile, needs: fetch}
  - {name: lint, command: echo lint, needs: fetch}
  - {name: test, command: echo test, needs: compile, artifacts: [{name: junit, path: junit.xml}]}
  - {name: docs, command: echo docs, needs: fetch}
  - {name: package, command: echo package, needs: [compile, docs]}
  - name: report
    function: os.path:join
    needs: [test]
    args: [{artifact: test.junit}]
"""


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / "wtflow.yml").write_text(SEVEN)
    return workdir


def seven() -> Workflow:
    return load_yaml(textwrap.dedent(SEVEN), "wtflow.yml")


def test_validate_counts_the_nodes_written(project: Path) -> None:
    result = cli("validate", "wtflow.yml")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "wtflow.yml: ok: workflow 'build', 7 nodes\n", "")


def test_list_counts_and_lists_the_nodes_written(project: Path) -> None:
    result = cli("list", "wtflow.yml")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "build  (7 nodes, wtflow.yml)",
        "  fetch  [command]",
        "  compile  [command, needs fetch]",
        "  lint  [command, needs fetch]",
        "  test  [command, needs compile]",
        "  docs  [command, needs fetch]",
        "  package  [command, needs compile, docs]",
        "  report  [function posixpath:join, needs test]",
    ]


def test_dry_run_of_a_target_counts_the_nodes_it_lists(project: Path) -> None:
    result = cli("run", "--dry-run", "--target", "compile")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:3] == ["workflow 'build': 2 nodes", "    1. fetch", "    2. compile"]


def test_mermaid_leaves_out_the_implicit_root_and_its_edges() -> None:
    drawing = mermaid(seven())
    assert drawing.splitlines()[:8] == [
        "flowchart TD",
        '  n0["fetch"]',
        '  n1["compile"]',
        '  n2["lint"]',
        '  n3["test"]',
        '  n4["docs"]',
        '  n5["package"]',
        '  n6["report"]',
    ]
    assert "build" not in drawing
    assert "-->" not in drawing  # every edge here is a needs or an artifact


def test_mermaid_draws_one_edge_per_pair_with_the_labels_joined() -> None:
    assert mermaid(seven()).splitlines()[8:] == [
        "  n0 -. needs .-> n1",
        "  n0 -. needs .-> n2",
        "  n1 -. needs .-> n3",
        "  n0 -. needs .-> n4",
        "  n1 -. needs .-> n5",
        "  n4 -. needs .-> n5",
        "  n3 -. needs, junit .-> n6",
    ]


def test_dot_leaves_out_the_implicit_root_and_draws_one_edge_per_pair() -> None:
    drawing = dot(seven())
    assert '"build" [shape=folder]' not in drawing
    assert '"build" ->' not in drawing
    assert drawing.count('"test" -> "report"') == 1
    assert '  "test" -> "report" [style=dashed, label="needs, junit"];\n' in drawing


def test_a_sequential_sibling_that_is_also_needed_gets_one_solid_edge_with_its_label() -> None:
    workflow = load_yaml("name: w\nroot: {name: r, children: [{name: a, command: x}, {name: b, command: y, needs: a}]}")
    assert mermaid(workflow).splitlines()[-2:] == ["  n0 --> n1", "  n1 -- needs --> n2"]
    assert dot(workflow).splitlines()[-3:-1] == ['  "r" -> "a";', '  "a" -> "b" [label="needs"];']


def test_validate_refuses_a_nul_character_with_its_place(project: Path) -> None:
    (project / "nul.yml").write_text('name: w\nroot: {name: a, command: "echo \\0"}\n')
    result = cli("validate", "nul.yml")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "nul.yml:2:26: command: 'echo \\x00' holds a NUL character (\\0)\n"
