"""``python -m wtflow``: the same as the ``wtflow`` command."""

from wtflow.entry import main

main()
