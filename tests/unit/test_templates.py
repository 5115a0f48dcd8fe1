"""Templates: typed values, text rendering, exact error paths, and a sandbox that stays small."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from app.domain.templates import TemplateResolutionError, holds, references, render, resolve

CONTEXT: dict[str, Any] = {
    "input": {"order_id": "A-1", "qty": 3, "vip": True, "note": None, "items": [{"sku": "x"}, {"sku": "y"}]},
    "fetch": {"body": {"user": {"id": 7, "tags": ["a", "b"]}}},
    "fetch-data": {"ok": True},
}


@pytest.mark.parametrize(
    "template,expected",
    [
        ("{{ input.qty }}", 3),
        ("  {{ fetch.body.user }}  ", {"id": 7, "tags": ["a", "b"]}),
        ("{{ input.items.1.sku }}", "y"),
        ("${fetch.output.body.user.id}", 7),
        ("${input.order_id}", "A-1"),
        ("{{ fetch-data.ok }}", True),
        ("{{ nodes['fetch-data'].ok }}", True),
        ("{{ input.qty * 2 + 1 }}", 7),
        ("{{ input.order_id | lower }}", "a-1"),
        ("{{ input.items | map(attribute='sku') | join(',') }}", "x,y"),
        ("{{ input.items | length }}", 2),
        ("{{ input.missing | default('none') }}", "none"),
    ],
)
def test_one_expression_keeps_its_json_type(template: str, expected: Any) -> None:
    assert render(template, CONTEXT) == expected


@pytest.mark.parametrize(
    "template,expected",
    [
        ("order {{ input.order_id }} x{{ input.qty }}", "order A-1 x3"),
        ("vip={{ input.vip }} note={{ input.note }}", "vip=true note=null"),
        ("user {{ fetch.body.user }}", 'user {"id": 7, "tags": ["a", "b"]}'),
        ("cost: $${PRICE} for ${input.qty}", "cost: ${PRICE} for 3"),
    ],
)
def test_inside_text_values_render_as_json_text(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected


def test_a_value_is_never_rendered_again_as_a_template() -> None:
    context = {"input": {"name": "{{ 7 * 7 }}", "broken": "{{ oops"}}
    assert render("Hello {{ input.name }}", context) == "Hello {{ 7 * 7 }}"
    assert render("x {{ input.broken }}", context) == "x {{ oops"


@pytest.mark.parametrize(
    "template,where",
    [
        ("{{ fetch.body.user.name }}", "fetch.body.user.name"),
        ("{{ input.items.5 }}", "input.items.5"),
        ("{{ ghost.x }}", "node 'ghost' has no output"),
        ("{{ input.qty.digits }}", "input.qty.digits"),
    ],
)
def test_a_missing_path_is_named(template: str, where: str) -> None:
    with pytest.raises(TemplateResolutionError, match=where.replace(".", r"\.")):
        render(template, CONTEXT)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 9 ** (9 ** 6) }}",
        '{{ "a" * 10 ** 9 }}',
        "{{ input.items * 1000000 }}",
        "{{ '%999999999s' % input.qty }}",
        "{{ 'a'.ljust(100000000) }}",
        "{{ range(10) }}",
        "{{ input.order_id.__class__ }}",
        "{{ input.order_id | center(1000000000) }}",
        "{{ input.order_id | replace('A', 'AAAAAAAAAA') }}",
    ],
)
def test_the_sandbox_refuses_what_could_run_long_or_grow_big(template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateResolutionError):
        render(template, CONTEXT)
    assert time.perf_counter() - started < 1


BIG = {"input": {"s": "x" * 20_000, "rows": [[1]] * 20_000}}


@pytest.mark.parametrize(
    "template",
    [
        "{{ input.s | join(input.s) }}",  # 400 million characters, built in C with the GIL held
        "{{ input.s | list | join(input.s) }}",
        "{{ input.s ~ input.s ~ input.s ~ input.s ~ input.s ~ input.s }}",
        "x{{ input.s ~ input.s ~ input.s ~ input.s ~ input.s ~ input.s }}",
        "{{ input.rows | sum(start=[]) }}",  # quadratic
        "{{ input.rows | map('join', input.s) | join(input.s) }}",
    ],
)
def test_filters_and_concatenation_are_bounded_before_they_build(template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateResolutionError, match=r"over 100000|numbers only"):
        render(template, BIG)
    assert time.perf_counter() - started < 1


def test_bounded_filters_still_do_their_work() -> None:
    context = {"input": {"tags": ["a", "b", "c"], "n": [1, 2, 3.5], "s": "x" * 20_000}}
    assert render("{{ input.tags | join(', ') }}", context) == "a, b, c"
    assert render("{{ input.tags | join(d='-') }}", context) == "a-b-c"
    assert render("{{ input.n | sum }}", context) == 6.5
    assert render("{{ input.tags | map('upper') | list }}", context) == ["A", "B", "C"]
    assert render("{{ input.s | list | length }}", context) == 20_000
    assert render("{{ 'id-' ~ input.tags.0 ~ 7 }}", context) == "id-a7"


def test_statements_are_not_templates() -> None:
    with pytest.raises(TemplateResolutionError, match="statements"):
        references("{% for x in input.items %}{{ x }}{% endfor %}")
    with pytest.raises(TemplateResolutionError, match="statements"):
        render("{# note #}{{ input.qty }}", CONTEXT)


def test_references_name_nodes_and_the_input_but_not_literals() -> None:
    assert references("{{ fetch.body }} {{ input.x }} ${b.output.y}") == {"fetch", "input", "b"}
    assert references("{{ true }} {{ 1 }} {{ none }}") == frozenset()
    assert references("{{ nodes['fetch-data'].ok and a.n > 1 }}") == {"fetch-data", "a"}
    with pytest.raises(TemplateResolutionError, match="does not parse"):
        references("{{ a.b | }}")
    assert references("{{ 9 ** (9 ** 9) }}") == frozenset()  # no constant folding: instant


def test_resolve_walks_a_whole_config() -> None:
    config = {"a": ["{{ input.qty }}", {"b": "x-{{ input.qty }}"}], "c": 1, "d": "plain"}
    assert resolve(config, CONTEXT) == {"a": [3, {"b": "x-3"}], "c": 1, "d": "plain"}


def test_guards() -> None:
    assert holds("fetch.body.user.id == 7 and input.vip", CONTEXT) is True
    assert holds("input.qty > 5", CONTEXT) is False
    assert holds("nodes['fetch-data'].ok", CONTEXT) is True


@pytest.mark.parametrize(
    "template,said",
    [
        ("{{ a.result", "'{{ a.result' is not closed"),
        ("x {{ a.ok }} then {{ b.ok", "'{{ b.ok' is not closed"),
        ("{{ a.ok }} and b.ok }}", "closes no"),
        ("}} {{ a.ok }}", "closes no"),
        ("${a.output.x", "'${a.output.x' is not closed"),
        ("id ${input.id} of ${a.output.x", "'${a.output.x' is not closed"),
    ],
)
def test_an_unpaired_delimiter_is_an_error_not_text(template: str, said: str) -> None:
    with pytest.raises(TemplateResolutionError, match=re.escape(said)):
        references(template)
    with pytest.raises(TemplateResolutionError, match=re.escape(said)):
        render(template, CONTEXT)


@pytest.mark.parametrize(
    "template,expected",
    [
        ('{"order": {"id": "{{ input.order_id }}"}}', '{"order": {"id": "A-1"}}'),  # JSON closing two objects
        ('{"a": {"b": 1}} ${input.qty}', '{"a": {"b": 1}} 3'),
        ("${input.qty} }} {", "3 }} {"),  # no `{{` written: `}}` is text
        ("{ {{ input.qty }} }", "{ 3 }"),
        ("{{ input.qty }} {a {b}}}", "3 {a {b}}}"),  # `}}` closes `{a {b`; a lone `}` stays text
        ("cost: $${PRICE for ${input.qty}", "cost: ${PRICE for 3"),
        ("{{ '{{' }} {{ input.qty }}", "{{ 3"),  # a literal `{{` as a slot
    ],
)
def test_braces_of_ordinary_text_stay_text(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected
