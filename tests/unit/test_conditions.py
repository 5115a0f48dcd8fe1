"""Conditions: every operator, dotted paths, all/any groups, errors and definition-time problems."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.domain.conditions import ConditionError, evaluate, problems

ORDER = {
    "status": "paid",
    "total": 120.5,
    "count": 3,
    "tags": ["vip", "eu"],
    "note": "Deliver before noon",
    "customer": {"name": "Ann", "address": {"city": "Lyon"}},
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
    "flag": True,
    "nothing": None,
}


@pytest.mark.parametrize(
    "field,operator,value,expected",
    [
        ("status", "eq", "paid", True),
        ("status", "eq", "open", False),
        ("count", "eq", 3.0, True),
        ("status", "ne", "open", True),
        ("status", "ne", "paid", False),
        ("total", "gt", 100, True),
        ("total", "gt", 120.5, False),
        ("total", "gte", 120.5, True),
        ("total", "gte", 121, False),
        ("count", "lt", 4, True),
        ("count", "lt", 3, False),
        ("count", "lte", 3, True),
        ("count", "lte", 2, False),
        ("status", "gt", "open", True),
        ("status", "in", ["paid", "shipped"], True),
        ("status", "in", ["open", "shipped"], False),
        ("status", "in", "unpaid or paid", True),
        ("status", "not_in", ["open", "shipped"], True),
        ("status", "not_in", ["paid"], False),
        ("tags", "contains", "vip", True),
        ("tags", "contains", "us", False),
        ("note", "contains", "noon", True),
        ("note", "contains", "midnight", False),
        ("customer", "contains", "name", True),
        ("customer", "contains", "email", False),
        ("status", "exists", True, True),
        ("nothing", "exists", True, True),
        ("status", "exists", False, False),
        ("missing", "exists", True, False),
        ("missing", "exists", False, True),
        ("note", "matches", r"^Deliver\s+before", True),
        ("note", "matches", "noon$", True),
        ("note", "matches", "^noon", False),
        ("note", "matches", "[0-9]+", False),
    ],
)
def test_each_operator_on_matching_and_non_matching_values(
    field: str, operator: str, value: Any, expected: bool
) -> None:
    assert evaluate({"field": field, "operator": operator, "value": value}, ORDER) is expected


def test_exists_without_a_value_means_exists_true() -> None:
    assert evaluate({"field": "status", "operator": "exists"}, ORDER) is True
    assert evaluate({"field": "missing", "operator": "exists"}, ORDER) is False


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("customer.name", "Ann", True),
        ("customer.address.city", "Lyon", True),
        ("customer.address.city", "Paris", False),
        ("items.0.sku", "A-1", True),
        ("items.1.sku", "B-7", True),
        ("items.1.qty", 1, True),
        ("items.0.sku", "B-7", False),
    ],
)
def test_dotted_paths_reach_into_nested_objects_and_list_indexes(field: str, value: Any, expected: bool) -> None:
    assert evaluate({"field": field, "operator": "eq", "value": value}, ORDER) is expected


@pytest.mark.parametrize(
    "field",
    ["missing", "customer.email", "customer.name.first", "items.2.sku", "items.-1.sku", "items.first.sku", "tags.x"],
)
def test_a_missing_field_equals_nothing_differs_from_everything_and_does_not_exist(field: str) -> None:
    assert evaluate({"field": field, "operator": "eq", "value": None}, ORDER) is False
    assert evaluate({"field": field, "operator": "ne", "value": None}, ORDER) is True
    assert evaluate({"field": field, "operator": "exists", "value": True}, ORDER) is False


@pytest.mark.parametrize("operator", ["gt", "gte", "lt", "lte", "in", "contains", "matches"])
def test_a_missing_field_fails_every_other_comparison(operator: str) -> None:
    assert evaluate({"field": "missing", "operator": operator, "value": "x"}, ORDER) is False


def test_a_missing_field_is_not_in_any_list() -> None:
    assert evaluate({"field": "missing", "operator": "not_in", "value": ["x"]}, ORDER) is True


def test_a_non_ascii_digit_path_segment_is_a_missing_field() -> None:
    assert evaluate({"field": "items.²", "operator": "exists"}, ORDER) is False


PAID = {"field": "status", "operator": "eq", "value": "paid"}
OPEN = {"field": "status", "operator": "eq", "value": "open"}
BIG = {"field": "total", "operator": "gt", "value": 100}
SMALL = {"field": "total", "operator": "lt", "value": 10}


@pytest.mark.parametrize(
    "condition,expected",
    [
        ({"all": [PAID, BIG]}, True),
        ({"all": [PAID, SMALL]}, False),
        ({"all": [OPEN, BIG]}, False),
        ({"any": [OPEN, BIG]}, True),
        ({"any": [PAID, SMALL]}, True),
        ({"any": [OPEN, SMALL]}, False),
        ({"all": [PAID, {"any": [OPEN, BIG]}]}, True),
        ({"all": [PAID, {"any": [OPEN, SMALL]}]}, False),
        ({"any": [OPEN, {"all": [PAID, BIG]}]}, True),
        ({"any": [OPEN, {"all": [PAID, SMALL]}]}, False),
    ],
)
def test_all_and_any_groups_nest(condition: dict[str, Any], expected: bool) -> None:
    assert evaluate(condition, ORDER) is expected


@pytest.mark.parametrize(
    "condition,message",
    [
        ({"field": "status", "operator": "gt", "value": 5}, "cannot apply gt"),
        ({"field": "total", "operator": "lte", "value": "100"}, "cannot apply lte"),
        ({"field": "flag", "operator": "gt", "value": 0}, "cannot apply gt"),
        ({"field": "count", "operator": "lt", "value": True}, "cannot apply lt"),
        ({"field": "status", "operator": "in", "value": 5}, "cannot apply in"),
        ({"field": "status", "operator": "not_in", "value": {"paid": 1}}, "cannot apply not_in"),
        ({"field": "count", "operator": "contains", "value": 3}, "cannot apply contains"),
        ({"field": "count", "operator": "matches", "value": "3"}, "cannot apply matches"),
        ({"field": "status", "operator": "like", "value": "paid"}, "unknown operator 'like'"),
        ({"field": "status", "value": "paid"}, "unknown operator None"),
        ({"field": "note", "operator": "matches", "value": "(unclosed"}, "bad pattern '(unclosed'"),
        ({"field": "note", "operator": "matches", "value": "(?=noon)"}, "bad pattern"),
    ],
)
def test_conditions_that_cannot_be_evaluated_raise_condition_error(condition: dict[str, Any], message: str) -> None:
    with pytest.raises(ConditionError, match=re.escape(message)):
        evaluate(condition, ORDER)


def test_an_error_inside_a_group_surfaces() -> None:
    with pytest.raises(ConditionError):
        evaluate({"all": [PAID, {"any": [{"field": "status", "operator": "gte", "value": 1}]}]}, ORDER)


def test_matches_runs_in_linear_time_on_a_catastrophic_pattern() -> None:
    # A backtracking engine would not return from this; RE2 answers at once.
    assert evaluate({"field": "text", "operator": "matches", "value": "(a+)+$"}, {"text": "a" * 100_000 + "b"}) is False


@pytest.mark.parametrize(
    "condition",
    [
        PAID,
        {"field": "items.0.sku", "operator": "exists"},
        {"field": "note", "operator": "matches", "value": "^Deliver"},
        {"all": [PAID, {"any": [BIG, SMALL]}]},
    ],
)
def test_valid_conditions_have_no_problems(condition: dict[str, Any]) -> None:
    assert problems(condition) == []


@pytest.mark.parametrize(
    "condition,expected_paths",
    [
        ({"operator": "eq", "value": 1}, ["condition.field"]),
        ({"field": "", "operator": "eq", "value": 1}, ["condition.field"]),
        ({"field": 3, "operator": "eq", "value": 1}, ["condition.field"]),
        ({"field": "status", "operator": "like"}, ["condition.operator"]),
        ({"value": 1}, ["condition.operator", "condition.field"]),
        ({"all": [PAID, {"field": "status", "operator": "like"}]}, ["condition.all.1.operator"]),
        ({"any": [{"all": [BIG, {"operator": "eq"}]}]}, ["condition.any.0.all.1.field"]),
        ({"all": []}, ["condition.all"]),
        ({"any": []}, ["condition.any"]),
        ({"all": PAID}, ["condition.all"]),
        ("status == paid", ["condition"]),
        ({"any": [PAID, ["not", "an", "object"]]}, ["condition.any.1"]),
        ({"field": "note", "operator": "matches", "value": "(unclosed"}, ["condition.value"]),
        ({"all": [{"field": "note", "operator": "matches", "value": "a{2,1}"}]}, ["condition.all.0.value"]),
    ],
)
def test_problems_name_the_path_of_each_structural_problem(condition: Any, expected_paths: list[str]) -> None:
    found = problems(condition)
    assert [path for path, _ in found] == expected_paths
    assert all(isinstance(message, str) and message for _, message in found)


ONE_OF_OPERATORS = "one of eq, ne, gt, gte, lt, lte, in, not_in, contains, exists, matches"


def test_problem_messages_say_what_is_expected() -> None:
    assert problems({"field": "status", "operator": "like"}) == [("condition.operator", ONE_OF_OPERATORS)]
    assert problems({"all": []}) == [("condition.all", "a non-empty list of conditions")]
    assert problems(7) == [("condition", "a condition is an object")]
    [(path, message)] = problems({"field": "note", "operator": "matches", "value": "(x"})
    assert path == "condition.value" and message.startswith("not a valid RE2 pattern")


def test_problems_use_the_given_path_prefix() -> None:
    assert problems({"field": "x", "operator": "nope"}, "nodes.check.config.condition") == [
        ("nodes.check.config.condition.operator", ONE_OF_OPERATORS)
    ]


@pytest.mark.parametrize(
    "condition,document,expected",
    [
        ({"field": "x", "operator": "eq", "value": 1}, {"x": True}, False),
        ({"field": "x", "operator": "eq", "value": False}, {"x": 0}, False),
        ({"field": "x", "operator": "in", "value": [1, 2]}, {"x": True}, False),
        ({"field": "x", "operator": "contains", "value": True}, {"x": [1]}, False),
        ({"field": "x", "operator": "eq", "value": True}, {"x": True}, True),
    ],
)
def test_booleans_are_not_numbers(condition: dict, document: dict, expected: bool) -> None:
    assert evaluate(condition, document) is expected
