"""Matrices: one node fanned out over combinations of values, as GitHub Actions' ``strategy.matrix``.

:class:`Matrix` holds the keys with their lists of values, ``include`` and ``exclude``, and
how the expansions run (``fail_fast``, ``max_parallel``). :meth:`Matrix.combinations` follows
GitHub's rules: the product of the keys' values, minus every combination an ``exclude`` entry
matches, then each ``include`` entry added to every combination whose original values it
matches (never overwriting an original value), or appended as a combination of its own when it
matches none.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wtflow.errors import WorkflowError

MAX_COMBINATIONS = 256  # as GitHub: a matrix makes at most 256 jobs
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Matrix:
    """The values a node is fanned out over.

    ``values`` maps each key to its list of values; ``include`` and ``exclude`` are lists of
    mappings as in GitHub Actions. ``fail_fast`` (default true) cancels the other expansions
    when one fails; ``max_parallel`` bounds how many expansions run at once.
    """

    values: Mapping[str, Sequence[Any]]
    include: Sequence[Mapping[str, Any]] = ()
    exclude: Sequence[Mapping[str, Any]] = ()
    fail_fast: bool = True
    max_parallel: int | None = None

    def __post_init__(self) -> None:
        values = dict(self.values)
        for key, items in values.items():
            if not isinstance(key, str) or not KEY_PATTERN.match(key):
                raise WorkflowError(f"matrix key {key!r} must be a name of letters, digits, _ and -", field=("matrix",))
            if isinstance(items, str | bytes) or not isinstance(items, Sequence) or not items:
                raise WorkflowError(f"matrix.{key} must be a non-empty list of values", field=("matrix", key))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "include", tuple(dict(entry) for entry in self.include))
        object.__setattr__(self, "exclude", tuple(dict(entry) for entry in self.exclude))
        if not values and not self.include:
            raise WorkflowError(
                "matrix has no values: give it keys with lists of values, or include", field=("matrix",)
            )
        for index, entry in enumerate(self.exclude):
            unknown = [key for key in entry if key not in values]
            if unknown:
                raise WorkflowError(
                    f"matrix exclude names {unknown[0]!r}, which is not a key of the matrix "
                    f"({', '.join(values) or 'none'})",
                    field=("matrix", "exclude", index),
                )
        if self.max_parallel is not None and (not isinstance(self.max_parallel, int) or self.max_parallel < 1):
            raise WorkflowError(f"max_parallel must be a whole number >= 1, got {self.max_parallel!r}")
        count = len(self.combinations())
        if count > MAX_COMBINATIONS:
            raise WorkflowError(
                f"matrix makes {count} combinations; at most {MAX_COMBINATIONS} are allowed: "
                "split the node or exclude some",
                field=("matrix",),
            )

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of values, in order, as GitHub Actions makes them."""
        keys = list(self.values)
        product = [dict(zip(keys, items, strict=True)) for items in itertools.product(*self.values.values())]
        if not keys:
            product = []
        kept = [combo for combo in product if not any(_matches(combo, entry) for entry in self.exclude)]
        originals = [dict(combo) for combo in kept]  # what include may extend but never overwrite
        added: list[dict[str, Any]] = []  # include entries that matched no original: not extended further
        for entry in self.include:
            matched = False
            for combo, original in zip(kept, originals, strict=True):
                if all(_equal(original[key], value) for key, value in entry.items() if key in original):
                    matched = True
                    combo.update({key: value for key, value in entry.items() if key not in original})
            if not matched:
                added.append(dict(entry))
        return kept + added


def _matches(combo: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(key in combo and _equal(combo[key], value) for key, value in entry.items())


def _equal(left: Any, right: Any) -> bool:
    return bool(type(left) is type(right) and left == right) or (_shown(left) == _shown(right))


def _shown(value: Any) -> str:
    """A value as an expansion's name shows it: text as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def expansion_name(name: str, combination: Mapping[str, Any]) -> str:
    """``name (v1, v2)``: the name GitHub Actions gives a matrix job."""
    return f"{name} ({', '.join(_shown(value) for value in combination.values())})"
