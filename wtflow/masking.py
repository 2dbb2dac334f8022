"""Hiding secret values in everything wtflow writes: console, logs, events, database, artifacts.

Secrets are the values of environment variables named by the workflow's ``secrets:`` or by
``--secret``, and values a node announces with GitHub's ``::add-mask::VALUE`` convention. Each
occurrence becomes ``***``. A multi-line secret is masked line by line (as GitHub does), and
values shorter than three characters are ignored: masking every ``1`` would hide everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
MIN_LENGTH = 3
ADD_MASK = b"::add-mask::"
_ADD_MASK_LINE = re.compile(rb"^::add-mask::(.*?)\r?$", re.MULTILINE)


class Masker:
    """Replaces every known secret value with ``***``."""

    def __init__(self, values: Iterable[str | bytes] = ()) -> None:
        self._values: set[bytes] = set()
        self._pattern: re.Pattern[bytes] | None = None
        for value in values:
            self.add(value)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return self._pattern is not None

    def add(self, value: str | bytes) -> None:
        """Mask ``value`` (each of its lines) from now on."""
        raw = value.encode() if isinstance(value, str) else value
        added = False
        for part in {raw, *raw.splitlines()}:
            line = part.strip(b"\r\n")
            if len(line) >= MIN_LENGTH and line not in self._values:
                self._values.add(line)
                added = True
        if added:
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile(b"|".join(re.escape(value) for value in ordered))

    def scan(self, lines: bytes) -> None:
        """Learn the values of ``::add-mask::VALUE`` lines in ``lines``."""
        if ADD_MASK in lines:
            for match in _ADD_MASK_LINE.finditer(lines):
                self.add(match.group(1))

    def bytes(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``***``."""
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        if self._pattern is None:
            return text
        return self.bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
