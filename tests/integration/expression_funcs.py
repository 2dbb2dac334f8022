"""Functions the expression, output and matrix CLI tests run as function nodes (importable by the child)."""

from __future__ import annotations

import os


def shows_arguments(*args: object, **kwargs: object) -> None:
    """Print each argument with its type, positional ones first, then keyword ones by name."""
    for value in args:
        print(f"{type(value).__name__} {value!r}")
    for name in sorted(kwargs):
        print(f"{name}: {type(kwargs[name]).__name__} {kwargs[name]!r}")


def gives_outputs() -> dict[str, object]:
    """A result whose keys become the node's outputs."""
    return {"version": "2.0", "count": 3}


def gives_environment_value(name: str) -> dict[str, object]:
    """The environment variable ``name`` as the output ``value``."""
    return {"value": os.environ.get(name, "")}
