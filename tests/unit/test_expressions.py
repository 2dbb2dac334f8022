"""GitHub Actions' expression language: parsing, errors with offsets, evaluation, templates and conditions."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wtflow.expressions import (
    CONTEXTS,
    FUNCTIONS,
    STATUS_FUNCTIONS,
    ExpressionError,
    has_expression,
    parse,
    parse_condition,
    parse_template,
    to_string,
    truthy,
)

FAILED = {"success": False, "failure": True, "cancelled": False}
CANCELLED = {"success": False, "failure": False, "cancelled": True}


def contexts() -> dict[str, Any]:
    return {
        "matrix": {"os": "linux", "n": 3, "half": 1.5, "list": ["a", "b"], "items": [{"name": "x"}, {"other": 1}]},
        "needs": {
            "build": {"result": "success", "outputs": {"Version": "1.2"}},
            "test": {"result": "failure", "outputs": {}},
        },
        "env": {"HOME": "/root"},
    }


def value(text: str, ctx: Mapping[str, Any] | None = None, status: Mapping[str, bool] | None = None) -> Any:
    return parse(text).evaluate(contexts() if ctx is None else ctx, status)


def error(text: str, **kwargs: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        parse(text, **kwargs)
    return caught.value


# -- literals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("711", 711),
        ("-9.2", -9.2),
        ("0xff", 255),
        ("-2.99e-2", -0.0299),
        ("1e3", 1000.0),
        ("'it''s'", "it's"),
        ("''", ""),
    ],
)
def test_literals_evaluate_to_python_values(text: str, expected: object) -> None:
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


def test_literal_keywords_are_lower_case_only() -> None:
    assert "did you mean 'true'?" in error("True").message


# -- operators and precedence --------------------------------------------------------------------


def test_not_binds_tighter_than_equality() -> None:
    """``!'x' == true`` is ``(!'x') == true``: false; ``!('x' == true)`` would be true."""
    assert value("!'x' == true") is False


def test_and_binds_tighter_than_or() -> None:
    assert value("true || false && false") is True


def test_comparison_binds_tighter_than_equality() -> None:
    """``1 < 2 == true`` is ``(1 < 2) == true``; ``1 < (2 == true)`` would be false."""
    assert value("1 < 2 == true") is True


def test_parentheses_group_first() -> None:
    assert value("(true || false) && false") is False


def test_and_returns_its_first_falsy_operand() -> None:
    assert value("0 && 'x'") == 0
    assert value("'' && 'x'") == ""


def test_and_returns_its_right_operand_when_the_left_is_truthy() -> None:
    assert value("'a' && 'b'") == "b"


def test_or_returns_its_first_truthy_operand() -> None:
    assert value("'a' || 'b'") == "a"
    assert value("matrix.nope || 'default'") == "default"


def test_or_does_not_evaluate_its_right_operand_when_the_left_is_truthy() -> None:
    assert value("true || fromJSON('{')") is True


def test_not_returns_a_boolean() -> None:
    assert value("!'text'") is False
    assert value("!0") is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", True),
        ("2 < 1", False),
        ("2 <= 2", True),
        ("3 <= 2", False),
        ("2 > 1", True),
        ("1 > 1", False),
        ("1 >= 1", True),
        ("0 >= 1", False),
        ("1 == 1", True),
        ("1 != 1", False),
        ("1 != 2", True),
        ("true > false", True),
        ("null <= null", True),
        ("null < null", False),
    ],
)
def test_comparison_operators(text: str, expected: bool) -> None:
    assert value(text) is expected


# -- loose equality, as GitHub documents it ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null == 0", True),
        ("null == ''", True),
        ("null == false", True),
        ("'' == 0", True),
        ("'abc' == 0", False),
        ("'abc' != 0", True),
        ("true == 1", True),
        ("false == 0", True),
        ("true == 'true'", False),
        ("'1' == 1", True),
        ("' 2 ' == 2", True),
        ("'0x10' == 16", True),
        ("'1.5e1' == 15", True),
        ("'abc' == 'ABC'", True),
        ("matrix.list == null", False),
        ("matrix.list == 0", False),
    ],
)
def test_loose_equality(text: str, expected: bool) -> None:
    assert value(text) is expected


def test_nan_is_neither_less_equal_nor_greater() -> None:
    assert [value(f"'abc' {op} 1") for op in ("<", "<=", "==", ">=", ">")] == [False] * 5


def test_objects_and_arrays_are_equal_only_to_themselves() -> None:
    ctx = {"matrix": {"a": [1], "b": [1]}}
    assert value("matrix.a == matrix.a", ctx) is True
    assert value("matrix.a == matrix.b", ctx) is False
    assert value("fromJSON('{}') == fromJSON('{}')") is False


def test_string_comparison_ignores_case() -> None:
    assert value("'abc' < 'ABD'") is True
    assert value("'B' > 'a'") is True
    assert value("'Linux' == matrix.os") is True


def test_strings_are_ordered_by_their_upper_case_form() -> None:
    """As Actions' OrdinalIgnoreCase: 'a' is 'A' (0x41), before '_' (0x5F)."""
    assert value("'a' < '_'") is True


# -- truthiness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("falsy", [False, 0, 0.0, -0.0, "", None, math.nan])
def test_falsy_values(falsy: object) -> None:
    assert truthy(falsy) is False


@pytest.mark.parametrize("truthful", [True, 1, -1, 0.5, "x", "false", "0", [], {}, math.inf])
def test_truthy_values(truthful: object) -> None:
    assert truthy(truthful) is True


# -- property and index access -------------------------------------------------------------------


def test_property_access_reads_nested_objects() -> None:
    assert value("needs.build.result") == "success"


def test_property_access_ignores_case() -> None:
    assert value("needs.build.outputs.version") == "1.2"
    assert value("MATRIX.OS") == "linux"


def test_an_exact_key_wins_over_a_case_insensitive_match() -> None:
    assert value("matrix.A", {"matrix": {"a": 1, "A": 2}}) == 2


@pytest.mark.parametrize(
    "text", ["matrix.nope", "needs.build.outputs.nope", "needs.nope.outputs.x", "matrix.os.length", "vars.x"]
)
def test_a_missing_property_is_null(text: str) -> None:
    assert value(text) is None


def test_index_by_string_reads_a_property() -> None:
    assert value("matrix['OS']") == "linux"
    assert value("needs[matrix.missing || 'build'].result") == "success"


@pytest.mark.parametrize(("text", "expected"), [("0", "a"), ("1", "b"), ("'1'", "b"), ("1.7", "b")])
def test_index_by_number_reads_an_element(text: str, expected: str) -> None:
    assert value(f"matrix.list[{text}]") == expected


@pytest.mark.parametrize("text", ["2", "-1", "'x'", "matrix"])
def test_an_index_outside_the_array_is_null(text: str) -> None:
    assert value(f"matrix.list[{text}]") is None


def test_star_collects_a_property_of_each_object_value() -> None:
    assert value("needs.*.result") == ["success", "failure"]


def test_star_skips_elements_without_the_property() -> None:
    assert value("matrix.items.*.name") == ["x"]


def test_star_result_is_a_plain_list() -> None:
    result = value("matrix.list.*")
    assert result == ["a", "b"]
    assert type(result) is list


def test_bracket_star_is_the_same_filter() -> None:
    assert value("needs[*].result") == ["success", "failure"]


def test_star_twice_flattens_one_level() -> None:
    assert value("matrix.*.*", {"matrix": {"a": [1, 2], "b": {"c": 3}}}) == [1, 2, 3]


def test_a_lazy_mapping_is_read_by_key_without_being_listed() -> None:
    class Lazy(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            if key == "HOME":
                return "/home/me"
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            raise AssertionError("listed")

        def __len__(self) -> int:
            raise AssertionError("listed")

    assert value("env.HOME", {"env": Lazy()}) == "/home/me"


def test_a_context_the_caller_does_not_give_is_null() -> None:
    assert value("vars.anything", {}) is None


# -- functions -----------------------------------------------------------------------------------


def test_contains_finds_a_substring_ignoring_case() -> None:
    assert value("contains('Hello World', 'WORLD')") is True
    assert value("contains('Hello', 'bye')") is False


def test_contains_converts_primitives_to_strings() -> None:
    assert value("contains(12345, 34)") is True
    assert value("contains('is true', true)") is True


def test_contains_in_an_array_uses_loose_equality() -> None:
    assert value("contains(fromJSON('[1, 2]'), '2')") is True
    assert value("contains(needs.*.result, 'FAILURE')") is True
    assert value("contains(matrix.list, 'c')") is False


def test_contains_in_an_object_is_false() -> None:
    assert value("contains(needs, 'build')") is False


def test_starts_with_and_ends_with_ignore_case() -> None:
    assert value("startsWith('Hello world', 'HE')") is True
    assert value("endsWith('Hello world', 'LD')") is True
    assert value("startsWith('Hello world', 'world')") is False
    assert value("endsWith(matrix.list, 'b')") is False


def test_function_names_ignore_case() -> None:
    assert value("STARTSWITH('abc', 'a')") is True
    assert parse("ToJson(1)").functions == {"tojson"}


def test_format_replaces_numbered_placeholders() -> None:
    assert value("format('{0} {1} {0}', 'a', 3.0)") == "a 3 a"


def test_format_converts_arguments_to_strings() -> None:
    assert value("format('[{0}|{1}|{2}]', true, null, 1.5)") == "[true||1.5]"


def test_format_doubled_braces_are_literal_braces() -> None:
    assert value("format('{{0}} {{{0}}}', 'x')") == "{0} {x}"


def test_format_with_a_lone_brace_is_an_error_at_the_call() -> None:
    expression = parse("1 && format('{0', 'x')")
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate({})
    assert caught.value.offset == 5
    assert "lone '{'" in caught.value.message
    assert "'{{'" in caught.value.message


def test_format_with_too_few_arguments_is_an_error() -> None:
    with pytest.raises(ExpressionError, match=r"'\{1\}' refers to argument 1, but only 1 follow"):
        value("format('{0}{1}', 'x')")


def test_join_uses_a_comma_by_default() -> None:
    assert value("join(matrix.list)") == "a,b"


def test_join_uses_the_given_separator() -> None:
    assert value("join(needs.*.result, ' and ')") == "success and failure"


def test_join_of_a_string_is_the_string() -> None:
    assert value("join('abc', '-')") == "abc"


def test_to_json_is_indented_by_two_spaces() -> None:
    assert value("toJSON(matrix.items)") == '[\n  {\n    "name": "x"\n  },\n  {\n    "other": 1\n  }\n]'


def test_to_json_prints_integral_numbers_without_a_fraction() -> None:
    assert value('toJSON(fromJSON(\'{"a": 3.0, "b": 0.5}\'))') == '{\n  "a": 3,\n  "b": 0.5\n}'


def test_to_json_of_a_string_is_quoted_and_keeps_unicode() -> None:
    assert value("toJSON('é\"')") == '"é\\""'


def test_from_json_reads_objects_and_numbers() -> None:
    assert value("fromJSON('{\"a\": [1, true, null]}')") == {"a": [1, True, None]}
    assert value("fromJSON('2') == 2") is True


def test_from_json_of_bad_json_is_an_error_at_the_call() -> None:
    expression = parse("true && fromJSON('{')")
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate({})
    assert caught.value.offset == 8
    assert caught.value.message.startswith("fromJSON(): not valid JSON")


def test_status_functions_read_the_status() -> None:
    assert [value(f"{name}()", status=FAILED) for name in ("success", "failure", "cancelled", "always")] == [
        False,
        True,
        False,
        True,
    ]


def test_without_a_status_only_failure_and_cancelled_are_false() -> None:
    assert [value(f"{name}()") for name in ("success", "failure", "cancelled", "always")] == [True, False, False, True]


def test_success_defaults_to_neither_failed_nor_cancelled() -> None:
    assert value("success()", status={"cancelled": True}) is False
    assert value("success()", status={}) is True


def test_function_names_are_listed_in_lower_case() -> None:
    assert {"contains", "startswith", "endswith", "format", "join", "tojson", "fromjson"} <= FUNCTIONS
    assert STATUS_FUNCTIONS <= FUNCTIONS


# -- parse errors --------------------------------------------------------------------------------


def test_unknown_function_is_reported_at_its_name() -> None:
    problem = error("1 == foo(1)")
    assert problem.offset == 5
    assert problem.message.startswith("unknown function 'foo'; known: always, cancelled, contains, endsWith,")


def test_unknown_function_suggests_a_close_name() -> None:
    assert "did you mean 'startsWith'?" in error("startswit('a', 'b')").message


def test_wrong_number_of_arguments_is_reported_at_the_call() -> None:
    problem = error("'x' && contains('a')")
    assert (problem.offset, problem.message) == (7, "contains() takes 2 arguments, not 1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("join(1, 2, 3)", "join() takes 1 or 2 arguments, not 3"),
        ("format()", "format() takes at least 1 argument, not 0"),
        ("always(1)", "always() takes 0 arguments, not 1"),
    ],
)
def test_arity_messages_say_what_the_function_takes(text: str, message: str) -> None:
    assert error(text).message == message


def test_unknown_context_is_reported_at_its_name() -> None:
    problem = error("env.a == foo.b")
    assert problem.offset == 9
    assert problem.message == "unknown context 'foo'; available here: env, matrix, needs, vars, wtflow"


def test_unknown_context_suggests_a_close_name() -> None:
    assert error("matrx.os").message.startswith("unknown context 'matrx'; did you mean 'matrix'? available here:")


def test_contexts_restrict_the_names_an_expression_may_read() -> None:
    problem = error("matrix.os && env.HOME", contexts={"matrix"})
    assert (problem.offset, problem.message) == (13, "unknown context 'env'; available here: matrix")
    assert parse("matrix.os", contexts={"matrix"}).contexts == {"matrix"}


def test_status_functions_are_known_whatever_the_contexts() -> None:
    assert parse("always()", contexts=()).uses_status


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("a &&", 4, "expected an expression after '&&'"),
        ("env.a ==  ", 8, "expected an expression after '=='"),
        ("(env.a", 0, "'(' is never closed: add ')'"),
        ("env[env.a", 3, "'[' is never closed: add ']'"),
        ("env.a)", 5, "unexpected ')': nothing is open for it to close"),
        ("()", 1, "unexpected ')'; expected an expression after '('"),
        ("'abc", 0, "unterminated string: add the closing '"),
        ("env.a = 1", 6, "unexpected '=': compare with '=='"),
        ("env.a & env.b", 6, "unexpected '&': 'and' is written '&&'"),
        ('"x"', 0, "strings are written in single quotes: 'text'"),
        ("", 0, "empty expression: write one between ${{ and }}"),
        ("env.", 4, "expected a property name or '*' after '.'"),
        ("1 2", 2, "unexpected '2'; expected an operator"),
        ("(1 2)", 3, "unexpected '2'; expected ')' or an operator"),
        ("join(env.a env.b)", 11, "unexpected 'env'; expected ')' or ',' or an operator"),
        ("1 + 2", 2, "unexpected character '+'"),
        ("${{ 1 }}", 0, "'${{' inside an expression: write the expression without ${{ }}"),
    ],
)
def test_syntax_errors_say_what_is_wrong_where(text: str, offset: int, message: str) -> None:
    problem = error(text)
    assert (problem.offset, problem.message) == (offset, message)


def test_parse_offset_is_added_to_error_offsets() -> None:
    assert error("a &&", offset=10).offset == 14


def test_expression_error_is_a_value_error_whose_text_is_the_message() -> None:
    problem = error("a &&")
    assert isinstance(problem, ValueError)
    assert str(problem) == "expected an expression after '&&'"


def test_expression_error_survives_pickling() -> None:
    raised = error("a &&")
    # Without its traceback: where distributed is loaded (tblib), pickling would take the frames too.
    raised.__traceback__ = raised.__context__ = None
    problem = pickle.loads(pickle.dumps(raised))  # noqa: S301 - our own object
    assert (problem.message, problem.offset) == ("expected an expression after '&&'", 4)


def test_very_deep_nesting_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("!" * 5000 + "true")


# -- what an expression reads and calls ----------------------------------------------------------


def test_references_are_the_static_property_paths_read() -> None:
    expression = parse("needs.build.outputs.version == matrix.os")
    assert expression.references == (("needs", "build", "outputs", "version"), ("matrix", "os"))


def test_a_reference_stops_at_a_dynamic_index() -> None:
    assert parse("needs[matrix.job].result").references == (("matrix", "job"), ("needs",))


def test_a_reference_stops_at_star() -> None:
    assert parse("needs.*.result").references == (("needs",),)


def test_a_string_index_is_part_of_a_reference() -> None:
    assert parse("needs['build'].result").references == (("needs", "build", "result"),)


def test_a_reference_inside_a_call_is_found() -> None:
    assert parse("fromJSON(env.JSON).a").references == (("env", "JSON"),)


def test_references_are_listed_once() -> None:
    assert parse("matrix.os == matrix.os").references == (("matrix", "os"),)


def test_contexts_and_functions_used_are_recorded_by_their_canonical_names() -> None:
    expression = parse("Contains(MATRIX.os, 'x') && Success()")
    assert expression.contexts == {"matrix"}
    assert expression.functions == {"contains", "success"}
    assert expression.references == (("matrix", "os"),)
    assert expression.uses_status


def test_source_is_the_stripped_text_and_offset_where_it_starts() -> None:
    expression = parse("  matrix.os ", offset=3)
    assert (expression.source, expression.offset) == ("matrix.os", 5)


def test_parsing_the_same_text_twice_gives_the_same_expression() -> None:
    assert parse("matrix.os == 'x'") is parse("matrix.os == 'x'")


def test_default_contexts() -> None:
    assert sorted(CONTEXTS) == ["env", "matrix", "needs", "vars", "wtflow"]


def test_importing_the_module_does_not_import_lark() -> None:
    code = "import sys, wtflow.expressions; print('lark' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- templates -----------------------------------------------------------------------------------


def test_a_template_substitutes_each_expression_between_literal_text() -> None:
    template = parse_template("echo ${{ matrix.os }}-${{ matrix.n }}${{ matrix.nope }}!")
    assert template.render_text(contexts()) == "echo linux-3!"
    assert [part if isinstance(part, str) else part.source for part in template.parts] == [
        "echo ",
        "matrix.os",
        "-",
        "matrix.n",
        "matrix.nope",
        "!",
    ]


def test_template_expression_offsets_are_positions_in_the_text() -> None:
    text = "a ${{ matrix.os }} b ${{matrix.n}}"
    assert [expression.offset for expression in parse_template(text).expressions] == [6, 24]
    assert text[6:15] == "matrix.os"


def test_render_of_exactly_one_expression_keeps_the_value() -> None:
    assert parse_template("${{ matrix.n }}").render(contexts()) == 3
    assert parse_template("${{ matrix.list }}").render(contexts()) == ["a", "b"]


def test_render_with_text_around_the_expression_is_a_string() -> None:
    assert parse_template(" ${{ matrix.n }}").render(contexts()) == " 3"


def test_render_text_of_one_expression_is_a_string() -> None:
    assert parse_template("${{ matrix.half }}").render_text(contexts()) == "1.5"


def test_render_of_text_without_expressions_is_the_text() -> None:
    assert parse_template("plain $ {{ text }}").render({}) == "plain $ {{ text }}"
    assert parse_template("").render({}) == ""


def test_closing_braces_inside_a_quoted_string_do_not_end_the_expression() -> None:
    assert parse_template("${{ 'a}}b' }}").render({}) == "a}}b"
    assert parse_template("${{ format('{0}}}', 'x') }}!").render({}) == "x}!"


def test_an_unclosed_expression_is_reported_at_its_start() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("echo ${{ matrix.os")
    assert (caught.value.offset, caught.value.message) == (5, "'${{' is never closed: end the expression with '}}'")


def test_an_unterminated_string_in_a_template_is_reported_at_its_quote() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("x ${{ 'abc }}")
    assert (caught.value.offset, caught.value.message) == (6, "unterminated string: add the closing '")


def test_a_syntax_error_in_a_template_is_reported_at_its_place_in_the_text() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("run ${{ matrix.os }} ${{ matrix.n == }}")
    assert (caught.value.offset, caught.value.message) == (36, "expected an expression after '=='")


def test_an_empty_expression_in_a_template_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="empty expression"):
        parse_template("a ${{ }}")


def test_template_contexts_restrict_every_expression() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("${{ matrix.os }} ${{ env.A }}", contexts={"matrix"})
    assert caught.value.offset == 21


def test_has_expression_looks_for_an_opening() -> None:
    assert has_expression("a ${{ b")
    assert not has_expression("a $ {{ b }}")


# -- conditions ----------------------------------------------------------------------------------


def test_a_condition_may_be_bare_or_wrapped_in_one_expression() -> None:
    assert parse_condition("matrix.os == 'linux'").evaluate(contexts()) is True
    wrapped = parse_condition("  ${{ matrix.os == 'linux' }} ")
    assert wrapped.evaluate(contexts()) is True
    assert (wrapped.source, wrapped.offset) == ("matrix.os == 'linux'", 6)


def test_a_condition_without_a_status_function_requires_success() -> None:
    condition = parse_condition("true")
    assert condition.implicit_success
    assert condition.source == "true"
    assert condition.evaluate({}, FAILED) is False
    assert condition.evaluate({}, CANCELLED) is False
    assert condition.evaluate({}) is True


def test_a_condition_with_always_runs_after_a_failure() -> None:
    condition = parse_condition("${{ always() }}")
    assert not condition.implicit_success
    assert condition.evaluate({}, FAILED) is True


def test_a_condition_with_failure_combines_with_other_tests() -> None:
    condition = parse_condition("failure() && matrix.x == 1")
    assert condition.evaluate({"matrix": {"x": 1}}, FAILED) is True
    assert condition.evaluate({"matrix": {"x": 2}}, FAILED) is False
    assert condition.evaluate({"matrix": {"x": 1}}) is False


def test_a_condition_that_succeeds_gives_the_expression_value() -> None:
    assert parse_condition("matrix.os").evaluate(contexts()) == "linux"


def test_text_after_a_conditions_expression_is_an_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition("${{ matrix.a }} && matrix.b")
    assert caught.value.offset == 16


def test_an_expression_inside_a_bare_condition_is_an_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition("matrix.a == ${{ matrix.b }}")
    assert caught.value.offset == 12


def test_a_condition_error_offset_is_in_the_condition_text() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition("${{ nope.x }}")
    assert caught.value.offset == 4


# -- to_string -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (3.0, "3"),
        (-0.5, "-0.5"),
        (1e21, "1E+21"),
        (math.nan, "NaN"),
        (-math.inf, "-Infinity"),
        ("text", "text"),
        ([1, "a"], '[\n  1,\n  "a"\n]'),
        ({"a": {"b": None}}, '{\n  "a": {\n    "b": null\n  }\n}'),
        ([], "[]"),
    ],
)
def test_to_string(given: object, expected: str) -> None:
    assert to_string(given) == expected


# -- properties ----------------------------------------------------------------------------------


@given(st.integers())
@settings(deadline=None)  # the first parse builds the parser; a loaded machine is slow
def test_to_string_of_any_int_is_its_decimal_form(number: int) -> None:
    assert to_string(number) == str(number)


@given(st.text())
@settings(deadline=None)  # the first parse builds the parser; a loaded machine is slow
def test_any_string_literal_evaluates_to_its_text(text: str) -> None:
    assert parse("'" + text.replace("'", "''") + "'").evaluate({}) == text


EXPRESSION_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="matrix.os env[]()'!=<>&|,* 0x1e-9{}$", max_size=40),
    st.lists(
        st.sampled_from(["matrix", ".", "os", "==", "&&", "||", "!", "(", ")", "[", "]", "'a'", "1", "contains(", ","]),
        max_size=12,
    ).map(" ".join),
)


def problem_of(action: Callable[[], object]) -> ExpressionError | None:
    try:
        action()
    except ExpressionError as exc:
        return exc
    return None


@given(EXPRESSION_TEXT)
@settings(deadline=None)  # the first parse builds the parser; a loaded machine is slow
def test_parse_and_evaluate_raise_only_expression_errors_within_the_text(text: str) -> None:
    problem = problem_of(lambda: parse(text).evaluate(contexts(), FAILED))
    assert problem is None or 0 <= problem.offset <= len(text)


@given(EXPRESSION_TEXT)
@settings(deadline=None)  # the first parse builds the parser; a loaded machine is slow
def test_parse_template_raises_only_expression_errors_within_the_text(text: str) -> None:
    template = "x ${{ " + text + " }}"
    problem = problem_of(lambda: parse_template(template))
    assert problem is None or 0 <= problem.offset <= len(template)
