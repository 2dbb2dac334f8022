"""doit's side of the suite (a baseline, run when doit is installed): N tasks running one command.

python -m doit -f bench/dodo.py -n 2 count=1000            # independent, two at a time
python -m doit -f bench/dodo.py count=1000 chain=1         # each needs the one before
"""

from collections.abc import Iterator

from doit import get_var

DOIT_CONFIG = {"verbosity": 0}  # doit captures each task's output, as wtflow stores it


def task_n() -> Iterator[dict[str, object]]:
    """The tasks: ``true`` unless ``command=`` says otherwise."""
    count, chain, command = int(get_var("count", "1000")), get_var("chain", "0") == "1", get_var("command", "true")
    for index in range(count):
        task: dict[str, object] = {"name": str(index), "actions": [command]}
        if chain and index:
            task["task_dep"] = [f"n:{index - 1}"]
        yield task
