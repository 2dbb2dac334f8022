"""``python -m wtflow``: the same as the ``wtflow`` command."""

from wtflow.cli import main

main(prog_name="wtflow")
