"""Durations: plain seconds or ``90s``/``1m30s``/``500ms``, and the messages for what is none."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from wtflow.durations import parse_duration

FORMS = "write seconds (90) or e.g. 90s, 5m, 1h30m"


@pytest.mark.parametrize(("value", "seconds"), [("90", 90.0), ("2.5", 2.5), (" 7 ", 7.0), ("0", 0.0)])
def test_text_without_a_unit_is_seconds(value: str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), (3, 3.0), (1.5, 1.5)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2s", 2.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 0.5), ("1h30m", 5400.0), (" 5m ", 300.0)],
)
def test_durations_with_units(value: str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["2x", "", "soon", "1e3", "1h 30m", "inf", "nan", "99999999999999999999h"])
def test_text_that_is_no_duration_is_refused_with_the_accepted_forms(value: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(f'{value!r} is not a duration; {FORMS}')}$"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5, "-1", "-2.5", "-1s", math.inf, -math.inf, math.nan, 10**400])
def test_negative_infinite_and_nan_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a duration >= 0$"):
        parse_duration(value)


def test_the_negative_message_shows_the_value_as_given() -> None:
    with pytest.raises(ValueError, match=r"^'-1s' is not a duration >= 0$"):
        parse_duration("-1s")


@pytest.mark.parametrize("value", [True, False, None, [1], b"1"])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a number of seconds or a duration such as 90s, 5m, 1h30m$"):
        parse_duration(value)


def test_plain_seconds_do_not_import_durationpy() -> None:
    """Every command parses --kill-grace and --db-retry: the common form stays off durationpy's import cost."""
    code = "import sys; from wtflow.durations import parse_duration as p; p('90'); print('durationpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
