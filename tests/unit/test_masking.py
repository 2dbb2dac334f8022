"""Secret values are replaced by *** wherever wtflow writes them."""

from __future__ import annotations

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
