"""A node's outputs: what it writes to the file ``$WTFLOW_OUTPUT`` names, as ``$GITHUB_OUTPUT`` takes it.

Each line is ``key=value``, or a block ``key<<DELIMITER`` ... ``DELIMITER`` for a value of
several lines. Later nodes read them as ``${{ needs.<node>.outputs.<key> }}``. A function
node's outputs are also the keys of the ``dict`` it returns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MAX_BYTES = 1024 * 1024  # of one node's outputs, as GitHub limits a job's
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def parse(text: str) -> tuple[dict[str, str], list[str]]:
    """The outputs in ``text``, and a problem for each line that is neither form."""
    found: dict[str, str] = {}
    problems: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        if equals and "<<" not in key and _KEY.match(key):
            found[key] = value
            continue
        key, marker, delimiter = line.partition("<<")
        if marker and _KEY.match(key) and delimiter:
            block: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                block.append(lines[index])
                index += 1
            if index == len(lines):
                problems.append(f"output {key!r}: no line {delimiter!r} ends its value")
                break
            index += 1
            found[key] = "\n".join(block)
            continue
        problems.append(f"line {index} of the outputs file is not key=value or key<<DELIMITER: {line[:60]!r}")
    return found, problems


def read(path: Path) -> tuple[dict[str, str], list[str]]:
    """The outputs in the file at ``path`` (none if it does not exist), and problems with it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return {}, []
    if size > MAX_BYTES:
        return {}, [f"the outputs file holds {size} bytes; at most {MAX_BYTES} are read: none were kept"]
    return parse(path.read_text(encoding="utf-8", errors="replace"))


def from_result(path: Path) -> dict[str, str]:
    """A function's outputs: the keys of the ``dict`` it returned (kept as JSON at ``path``), as text."""
    try:
        value: Any = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(key): item if isinstance(item, str) else json.dumps(item) for key, item in value.items()}
