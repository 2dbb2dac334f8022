"""Durations as people write them: ``90`` or ``2.5`` seconds, or ``90s``, ``1m30s``, ``500ms``, ``1h``.

One parser for every place that takes a duration (command-line options, ``WTFLOW_*`` variables,
INI keys, workflow files), so they accept the same forms and word their errors alike.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_PLAIN_SECONDS = re.compile(r"-?\d+(\.\d+)?")  # "-1" too, to be refused as negative, not as no duration
_WRONG_TYPE = "expected a number of seconds or a duration such as 90s, 5m, 1h30m"


def parse_duration(value: object) -> float:
    """Seconds (>= 0, finite) from a number or a text such as ``90``, ``2.5``, ``90s``, ``1m30s`` or ``500ms``.

    Units are those of Go's ``time.ParseDuration`` (``ns``, ``us``, ``ms``, ``s``, ``m``, ``h``)
    and ``d``; surrounding whitespace is ignored. Raises :class:`ValueError` with a message for
    the user for anything else (``True``, ``'2x'``), and for a negative, infinite or NaN duration.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(_WRONG_TYPE)  # noqa: TRY004 - one error type for callers (pydantic reports ValueError)
    if isinstance(value, str):
        text = value.strip()
        if _PLAIN_SECONDS.fullmatch(text):
            seconds = float(text)
        else:
            import durationpy  # only for texts with units: it adds to every command's start

            try:
                seconds = durationpy.from_str(text).total_seconds()
            except (ValueError, OverflowError):  # durationpy.DurationError is a ValueError
                raise ValueError(f"{value!r} is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m") from None
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration >= 0")
    return seconds
