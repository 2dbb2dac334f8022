"""``python -m wtflow``: the same as the ``wtflow`` command."""

from wtflow.cli import entry

entry()
