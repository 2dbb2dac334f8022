"""Secret values are replaced by *** wherever wtflow writes them."""

from __future__ import annotations

import random
import re

from wtflow import masking
from wtflow.masking import Masker


def test_secret_values_become_stars() -> None:
    assert Masker(["hunter2"]).bytes(b"pw=hunter2; again hunter2\n") == b"pw=***; again ***\n"


def test_a_secret_containing_another_is_masked_whole() -> None:
    assert Masker(["abc", "abcdef"]).text("xabcdefx abc") == "x***x ***"


def test_multi_line_secrets_are_masked_line_by_line() -> None:
    masker = Masker(["line-one\nline-two"])
    assert masker.bytes(b"line-two appears alone\n") == b"*** appears alone\n"


def test_values_shorter_than_three_characters_are_ignored() -> None:
    masker = Masker(["ab", ""])
    assert not masker.active
    assert masker.text("abc") == "abc"


def test_add_mask_lines_teach_new_secrets() -> None:
    masker = Masker()
    masker.scan(b"hello\n::add-mask::s3cr3t-token\nmore\n")
    assert masker.bytes(b"token is s3cr3t-token\n") == b"token is ***\n"


def test_a_value_that_is_not_utf8_masks_the_bytes_a_process_prints() -> None:
    """An environment variable's undecodable bytes come to Python as lone surrogates."""
    value = b"tok-\xff\xfe-secret".decode("utf-8", "surrogateescape")
    masker = Masker([value])
    assert masker.bytes(b"got tok-\xff\xfe-secret\n") == b"got ***\n"
    assert masker.text(f"error: {value} refused") == "error: *** refused"


def test_a_lone_surrogate_no_decoding_made_does_not_crash_masking() -> None:
    masker = Masker(["abc\ud800def"])
    assert masker.text("x abc\ud800def y") == "x *** y"
    assert masker.text("plain \ud801 text") == "plain \ud801 text"


def test_masking_matches_longest_first_alternation() -> None:
    """The leftmost secret is masked, the longest of those starting there: as a regex tried longest first."""
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    for _ in range(2000):
        values = list({"".join(rng.choice("ab") for _ in range(rng.randint(3, 6))) for _ in range(rng.randint(1, 5))})
        text = "".join(rng.choice("abx") for _ in range(rng.randint(0, 30)))
        reference = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
        assert Masker(values).text(text) == reference.sub("***", text), (values, text)


def test_values_announced_one_at_a_time_do_not_rebuild_the_search_for_every_value(
    automaton_builds: list[int],
) -> None:
    """3,000 ``::add-mask::`` lines, each in its own chunk, cost far less than 3,000 searches of all values."""
    built = automaton_builds
    masker = Masker()
    for n in range(3000):
        line = f"::add-mask::value-{n:05d}\n".encode()
        masker.scan(line)
        assert masker.bytes(line) == b"::add-mask::***\n"
    assert masker.bytes(b"value-00000 value-02999\n") == b"*** ***\n"
    # Rebuilding for every value would build 3000 * 3001 / 2 (4.5 million) values into automata.
    assert sum(built) < 3000 * 200


def test_a_secret_across_values_learned_at_different_times_is_masked_whole() -> None:
    masker = Masker([f"old-{n:03d}" for n in range(100)])
    masker.bytes(b"settle\n")
    masker.add("-000-and-more")
    assert masker.bytes(b"x old-000-and-more y\n") == b"x *** y\n"


def test_mask_values_past_the_cap_are_refused_with_a_warning_naming_it() -> None:
    masker = Masker(f"value-{n}" for n in range(masking.MAX_VALUES))
    assert masker.warnings() == []
    warning = masker.scan(b"::add-mask::one-too-many\n::add-mask::two-too-many\n")
    assert warning is not None
    assert f"{masking.MAX_VALUES:,}" in warning
    assert masker.bytes(b"value-0 one-too-many\n") == b"*** one-too-many\n"
    assert masker.warnings() == [
        f"more than {masking.MAX_VALUES:,} values to mask (the limit): 2 later values are not masked"
    ]


def test_the_head_of_a_piece_stops_short_of_a_secret_that_may_still_be_arriving() -> None:
    masker = Masker(["secret-value"])
    data = b"x" * 20 + b"secret-va"
    masked, cut = masker.head(data)
    assert cut == len(data) - (len("secret-value") - 1)
    assert masked == data[:cut]


def test_the_head_of_a_piece_takes_a_whole_secret_lying_across_the_cut() -> None:
    masker = Masker(["secret-value"])
    data = b"x" * 20 + b"secret-value" + b"yy"
    masked, cut = masker.head(data)
    assert cut == 20 + len("secret-value")
    assert masked == b"x" * 20 + b"***"
