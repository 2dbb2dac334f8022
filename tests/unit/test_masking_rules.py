"""Masking's exact results: values kept, the cap and its wording, the head held back, decoding fallbacks."""

from __future__ import annotations

from wtflow import masking
from wtflow.masking import Masker


def full_masker() -> Masker:
    """A masker holding exactly the cap of values."""
    return Masker(f"value-{n:05d}" for n in range(masking.MAX_VALUES))


def test_a_value_of_exactly_three_bytes_is_masked() -> None:
    assert Masker(["abc"]).text("x abc x") == "x *** x"


def test_spaces_around_a_value_are_part_of_it() -> None:
    assert Masker(["  padded secret  "]).text("[  padded secret  ]") == "[***]"


def test_a_value_with_windows_line_ends_is_masked_line_by_line() -> None:
    masker = Masker([b"first-line\r\nsecond-line\r\n"])
    assert masker.bytes(b"a first-line b second-line c\r\n") == b"a *** b *** c\r\n"


def test_longest_is_the_length_of_the_longest_value() -> None:
    assert Masker(["abc", "abcdefgh", "xyzw"]).longest == 8
    assert Masker().longest == 0


def test_the_cap_keeps_exactly_max_values_values() -> None:
    masker = full_masker()
    assert masker.warnings() == []
    assert masker.bytes(b"value-09999") == b"***"


def test_the_first_value_beyond_the_cap_is_dropped_with_a_warning() -> None:
    masker = full_masker()
    warning = masker.add("one-too-many")
    assert warning == "more than 10,000 values to mask (the limit): 1 later value is not masked"
    assert masker.text("one-too-many") == "one-too-many"


def test_only_the_first_value_beyond_the_cap_returns_a_warning() -> None:
    masker = full_masker()
    masker.add("one-too-many")
    assert masker.add("two-too-many") is None


def test_the_cap_warning_counts_every_dropped_value() -> None:
    masker = full_masker()
    for n in range(1001):
        masker.add(f"dropped-{n}")
    assert masker.warnings() == ["more than 10,000 values to mask (the limit): 1,001 later values are not masked"]


def test_scan_returns_the_cap_warning_of_an_announced_value() -> None:
    masker = full_masker()
    warning = masker.scan(b"::add-mask::late-value\n")
    assert warning == "more than 10,000 values to mask (the limit): 1 later value is not masked"


def test_head_of_a_masker_without_values_is_all_the_data() -> None:
    assert Masker().head(b"abc") == (b"abc", 3)


def test_head_holds_back_the_last_longest_minus_one_bytes() -> None:
    assert Masker(["secret"]).head(b"0123456789") == (b"01234", 5)


def test_head_of_data_shorter_than_the_tail_is_empty() -> None:
    assert Masker(["long-secret"]).head(b"abc") == (b"", 0)


def test_head_moves_past_a_secret_found_across_the_cut() -> None:
    assert Masker(["secret"]).head(b"xx secret yy") == (b"xx ***", 9)


def test_head_holds_back_a_secret_starting_right_at_the_cut() -> None:
    masker = Masker(["secret", "a-much-longer-secret"])  # the tail: 19 bytes
    data = b"a" * 4 + b"secret" + b"b" * 13
    assert masker.head(data) == (b"aaaa", 4)


def test_head_masks_a_secret_before_the_cut_and_keeps_what_follows_it() -> None:
    assert Masker(["secret"]).head(b"secret 0123456789") == (b"*** 01234", 12)


def test_text_of_a_value_ending_inside_a_character_replaces_what_cannot_decode() -> None:
    """A value announced as bytes can end inside a character; with a lone surrogate the rest cannot decode."""
    masker = Masker([b"abc\xc3"])  # "abcé" without the last byte of "é"
    assert masker.text("abcé \ud800") == "***\ufffd \ufffd\ufffd\ufffd"


def test_text_with_a_lone_surrogate_keeps_it_when_nothing_breaks_a_character() -> None:
    assert Masker(["secret"]).text("secret \ud800 é") == "*** \ud800 é"


def values_settled_and_fresh(settled: list[str], fresh: list[str]) -> Masker:
    """A masker whose ``settled`` values are in the large automaton and ``fresh`` in the small one."""
    filler = [f"filler-{n:03d}" for n in range(masking.FRESH_MIN + 1)]
    masker = Masker()
    for value in [*settled, *filler]:
        masker.add(value)
    masker.bytes(b"")  # a search: the values added so far go into the large automaton
    masker.bytes(b"x")
    for value in fresh:
        masker.add(value)
    return masker


def test_values_announced_one_at_a_time_stay_masked_after_many_more() -> None:
    masker = Masker()
    values = [f"announced-{n:03d}" for n in range(200)]
    for value in values:
        masker.add(value)
        assert masker.text(value) == "***"
    assert all(masker.text(value) == "***" for value in values)


def test_a_fresh_value_overlapping_a_settled_one_masks_both_as_one() -> None:
    masker = values_settled_and_fresh(["abcdef"], ["defghi"])
    assert masker.text("<abcdefghi>") == "<***>"


def test_a_fresh_value_inside_a_settled_one_is_masked_with_it() -> None:
    masker = values_settled_and_fresh(["outer-secret-value"], ["secret"])
    assert masker.text("<outer-secret-value> secret") == "<***> ***"


def test_adjacent_secrets_from_the_two_automata_are_masked_each() -> None:
    masker = values_settled_and_fresh(["abcdef"], ["ghijkl"])
    assert masker.text("abcdefghijkl") == "******"


def test_a_fresh_value_is_masked_where_no_settled_value_is_found() -> None:
    masker = values_settled_and_fresh(["settled-value"], ["fresh-value"])
    assert masker.text("only fresh-value here") == "only *** here"


def test_a_settled_value_is_masked_where_no_fresh_value_is_found() -> None:
    masker = values_settled_and_fresh(["settled-value"], ["fresh-value"])
    assert masker.text("only settled-value here") == "only *** here"


def test_text_keeps_undecodable_bytes_that_are_not_secret() -> None:
    assert Masker(["secret"]).text("secret \udcff") == "*** \udcff"


def test_only_line_ends_are_stripped_from_a_value() -> None:
    masker = Masker(["Xkey-valueX"])
    assert masker.text("key-value Xkey-valueX") == "key-value ***"


def test_a_short_line_does_not_stop_the_other_lines_of_a_value_being_masked() -> None:
    short_lines = "\n".join("abcdefghijklmnopqrstuvwxyz")
    masker = Masker([f"{short_lines}\nlong-secret-line"])
    assert masker.text("is long-secret-line") == "is ***"


def test_every_line_of_a_value_beyond_the_cap_is_counted_as_dropped() -> None:
    masker = full_masker()
    masker.add("late-one\nlate-two")  # the value itself and each of its lines
    assert masker.warnings() == ["more than 10,000 values to mask (the limit): 3 later values are not masked"]


def test_scan_without_a_cap_reached_returns_no_warning() -> None:
    masker = Masker()
    assert masker.scan(b"::add-mask::new-value\n") is None
    assert masker.scan(b"no announcement\n") is None
