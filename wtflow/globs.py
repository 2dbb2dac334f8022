"""The rules of a node's ``sources`` and ``outputs`` globs: relative POSIX paths that stay inside its directory.

One definition for the model, which refuses a bad pattern when the workflow is built, and the
cache, which walks the patterns (and is also called on its own).
"""

from __future__ import annotations

import re

_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def relative_parts(text: str, what: str, *, glob: bool = True) -> list[str]:
    """The parts of ``text``, a relative POSIX glob (or path, with ``glob=False``), without ``.`` and empty parts.

    Raises :class:`ValueError` beginning with ``what`` and naming ``text`` when it is empty,
    absolute, has a ``..`` part, or (a glob) has ``**`` inside a part: ``**`` is any depth of
    directories only as a whole part, as in ``src/**/*.py``.
    """
    if not text:
        raise ValueError(f"{what} {text!r} is empty")
    if text.startswith(("/", "\\")) or _DRIVE.match(text):
        raise ValueError(f"{what} {text!r} is absolute: write it relative to the working directory")
    parts = [part for part in text.split("/") if part not in {"", "."}]
    if ".." in parts:
        raise ValueError(f"{what} {text!r} contains '..': it must stay inside the working directory")
    if glob and any("**" in part and part != "**" for part in parts):
        raise ValueError(f"{what} {text!r}: '**' must be a whole part of the path, as in 'src/**/*.py'")
    return parts
