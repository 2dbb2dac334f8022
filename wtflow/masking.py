"""Hiding secret values in everything wtflow writes: console, logs, events, database, artifacts.

Secrets are the values of environment variables named by the workflow's ``secrets:`` or by
``--secret``, and values a node announces with GitHub's ``::add-mask::VALUE`` convention. Each
occurrence becomes ``***``. A multi-line secret is masked line by line (as GitHub does), and
values shorter than three bytes are ignored: masking every ``1`` would hide everything.

Masking works on bytes: a value that is not valid UTF-8 (an environment variable's undecodable
bytes, which Python holds as lone surrogates) is masked as the bytes a process prints. The
values are searched with Aho-Corasick automata, whose cost grows with the output and not with
the number of values; where secrets overlap, the leftmost match wins, and of the matches
starting there the longest, so a secret that contains another is masked whole. A run masks at
most :data:`MAX_VALUES` values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ahocorasick_rs import BytesAhoCorasick

MASK = b"***"
MIN_LENGTH = 3
# Each value costs memory and time to build into the automata; a node announcing values without
# end (a loop printing ``::add-mask::``) must not take the runner with it.
MAX_VALUES = 10_000
# Values added since the large automaton was built are searched with a small one of their own,
# rebuilt when they change; the large one is rebuilt only once they outnumber this or the square
# root of all values. Announcing values one at a time then costs O(n^1.5) automaton building in
# all, not O(n^2), and every search runs over at most two automata.
FRESH_MIN = 32
ADD_MASK = b"::add-mask::"
_ADD_MASK_LINE = re.compile(rb"^::add-mask::(.*?)\r?$", re.MULTILINE)


def encode(text: str) -> bytes:
    """``text`` as the bytes a process would see: undecodable bytes (``surrogateescape``) come back as they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoding produced: kept as its own UTF-8 form
        return text.encode("utf-8", "surrogatepass")


def _automaton(values: Sequence[bytes], *, fresh: bool = False) -> BytesAhoCorasick:
    import ahocorasick_rs  # only once there is something to mask

    # The automaton of fresh values is rebuilt often: the kind quickest to build, not to search.
    implementation = ahocorasick_rs.Implementation.NoncontiguousNFA if fresh else None
    return ahocorasick_rs.BytesAhoCorasick(
        values, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest, implementation=implementation
    )


class Masker:
    """Replaces every known secret value with ``***``."""

    def __init__(self, values: Iterable[str | bytes] = ()) -> None:
        self._values: set[bytes] = set()
        self._settled: list[bytes] = []  # the values of the large automaton
        self._fresh: list[bytes] = []  # values added since
        self._settled_finder: BytesAhoCorasick | None = None
        self._fresh_finder: BytesAhoCorasick | None = None  # None when missing or out of date
        self._longest = 0
        self._dropped = 0
        for value in values:
            self.add(value)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return bool(self._values)

    @property
    def longest(self) -> int:
        """The length in bytes of the longest value masked (0 when none)."""
        return self._longest

    def add(self, value: str | bytes) -> str | None:
        """Mask ``value`` (each of its lines) from now on; a warning if the cap of values dropped it."""
        raw = encode(value) if isinstance(value, str) else value
        warning = None
        for part in {raw, *raw.splitlines()}:
            line = part.strip(b"\r\n")
            if len(line) < MIN_LENGTH or line in self._values:
                continue
            if len(self._values) >= MAX_VALUES:
                self._dropped += 1
                if self._dropped == 1:
                    warning = self._cap_message()
                continue
            self._values.add(line)
            self._fresh.append(line)
            self._fresh_finder = None
            self._longest = max(self._longest, len(line))
        return warning

    def scan(self, lines: bytes) -> str | None:
        """Learn the values of ``::add-mask::VALUE`` lines in ``lines``; a warning the first time the cap is hit."""
        warning = None
        if ADD_MASK in lines:
            for match in _ADD_MASK_LINE.finditer(lines):
                warning = self.add(match.group(1)) or warning
        return warning

    def warnings(self) -> list[str]:
        """What went wrong: values beyond the cap, which are not masked."""
        return [self._cap_message()] if self._dropped else []

    def _cap_message(self) -> str:
        dropped = f"{self._dropped:,} later value" + ("s are" if self._dropped > 1 else " is")
        return f"more than {MAX_VALUES:,} values to mask (the limit): {dropped} not masked"

    def head(self, data: bytes) -> tuple[bytes, int]:
        """``data`` but a tail where a secret may still be arriving: ``(masked head, length of the head)``.

        The tail is the last ``longest - 1`` bytes, less any secret found whole across its start:
        a secret that starts in the tail is masked once the rest of it has arrived.
        """
        return self._mask(data, len(data) - max(self._longest - 1, 0))

    def _mask(self, data: bytes, cut: int) -> tuple[bytes, int]:
        """``data[:cut]`` masked, the cut moved past a secret found across it; and where the cut fell."""
        cut = max(cut, 0)
        spans = self._spans(data) if cut else []
        if not spans:
            return (data if cut == len(data) else data[:cut]), cut
        parts = []
        position = 0
        for start, end in spans:
            if start >= cut:
                break
            parts.append(data[position:start])
            parts.append(MASK)
            position = end
        cut = max(cut, position)
        parts.append(data[position:cut])
        return b"".join(parts), cut

    def _spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where secrets are in ``data``: sorted, not overlapping."""
        if not self._values:
            return []
        if len(self._fresh) > max(FRESH_MIN, math.isqrt(len(self._values))):
            self._settled += self._fresh
            self._fresh = []
            self._settled_finder = _automaton(self._settled)
        if self._fresh and self._fresh_finder is None:
            self._fresh_finder = _automaton(self._fresh, fresh=True)
        found = [
            [(start, end) for _, start, end in finder.find_matches_as_indexes(data)]
            for finder in (self._settled_finder, self._fresh_finder)
            if finder is not None
        ]
        if len(found) == 1:
            return found[0]
        return _union(found[0], found[1])

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        if not self._values:
            return text
        try:
            return self.bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no decoding produced: kept in its own UTF-8 form
            masked = self.bytes(text.encode("utf-8", "surrogatepass"))
        try:
            return masked.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # a value announced as bytes ended inside a character
            return masked.decode("utf-8", "replace")

    # Last in the class: after it, ``bytes`` in an annotation would name this method.
    def bytes(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``***``."""
        masked, _ = self._mask(data, len(data))
        return masked


def _union(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Two sorted lists of spans as one; overlapping spans (one secret across another) become one."""
    if not first or not second:
        return first or second
    merged: list[tuple[int, int]] = []
    for start, end in sorted(first + second):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
