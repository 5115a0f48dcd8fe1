"""DAG validation: every problem reported at once, with its node and field."""

from __future__ import annotations

import random

import pytest

from app.domain.dag import (
    Limits,
    NodeSpec,
    dependents_map,
    find_cycles,
    find_problems,
    new_node_problems,
    size_problems,
    topological_order,
    with_step_order_dependencies,
)
from app.domain.errors import InvalidWorkflowError

HANDLERS = {"noop", "compute"}


def node(node_id: str, *deps: str, handler: str = "noop", **kw: object) -> NodeSpec:
    return NodeSpec(node_id, handler, tuple(deps), **kw)  # type: ignore[arg-type]


DEFAULT_LIMITS = Limits()


def codes(nodes: list[NodeSpec], limits: Limits = DEFAULT_LIMITS) -> list[tuple[str | None, str, str]]:
    return [(p.node_id, p.field, p.code) for p in find_problems(nodes, HANDLERS, limits)]


def test_a_valid_diamond_has_no_problems() -> None:
    assert codes([node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")]) == []


def test_empty_dag() -> None:
    assert codes([]) == [(None, "nodes", "empty_dag")]


def test_each_problem_is_reported_with_node_and_field() -> None:
    problems = codes(
        [
            node("a"),
            node("a"),
            node("b", "b"),
            node("c", "ghost"),
            node("d", handler="teleport"),
            node("bad id!"),
            node("input"),
            node("e", config={"blob": "x" * 11_000}),
            node("f", timeout_seconds=0),
        ]
    )
    assert ("a", "id", "duplicate_node_id") in problems
    assert ("b", "dependencies", "self_dependency") in problems
    assert ("c", "dependencies", "unknown_dependency") in problems
    assert ("d", "handler", "unknown_handler") in problems
    assert ("bad id!", "id", "invalid_node_id") in problems
    assert ("input", "id", "reserved_node_id") in problems
    assert ("e", "config", "config_too_large") in problems
    assert ("f", "timeout_seconds", "invalid_timeout") in problems
    # a self-dependency is reported as such, not also as a cycle
    assert not any(code == "cycle" for _, _, code in problems)


def test_a_cycle_names_exactly_the_nodes_on_it() -> None:
    nodes = [node("start"), node("a", "start", "c"), node("b", "a"), node("c", "b"), node("after", "c")]
    problems = find_problems(nodes, HANDLERS, Limits())
    cycles = [p for p in problems if p.code == "cycle"]
    assert len(cycles) == 1
    assert sorted(cycles[0].details["cycle"]) == ["a", "b", "c"]
    assert "a -> " in cycles[0].message or "b -> " in cycles[0].message or "c -> " in cycles[0].message


def test_two_separate_cycles_are_both_reported() -> None:
    nodes = [node("a", "b"), node("b", "a"), node("x", "y"), node("y", "z"), node("z", "x")]
    found = sorted(sorted(c) for c in find_cycles(nodes))
    assert found == [["a", "b"], ["x", "y", "z"]]


def test_a_node_downstream_of_a_cycle_is_not_called_part_of_it() -> None:
    nodes = [node("a", "b"), node("b", "a"), node("tail", "a"), node("tail2", "tail")]
    assert [sorted(c) for c in find_cycles(nodes)] == [["a", "b"]]


def test_node_count_limit() -> None:
    nodes = [node(f"n{i}") for i in range(6)]
    assert (None, "nodes", "too_many_nodes") in codes(nodes, Limits(max_nodes=5))
    assert codes(nodes, Limits(max_nodes=6)) == []


def test_config_size_limit_is_in_bytes_of_json() -> None:
    limit = Limits(max_config_bytes=100)
    assert codes([node("a", config={"k": "é" * 46})], limit) == []  # 8 + 92 bytes: at the limit
    assert ("a", "config", "config_too_large") in codes([node("a", config={"k": "é" * 47})], limit)


def test_kahn_order_respects_every_edge_on_a_random_dag() -> None:
    rng = random.Random(7)
    nodes = [node("n0")]
    for i in range(1, 500):
        deps = {f"n{rng.randrange(i)}" for _ in range(rng.randrange(4))}
        nodes.append(node(f"n{i}", *sorted(deps)))
    order, stuck = topological_order(nodes)
    assert stuck == []
    position = {node_id: i for i, node_id in enumerate(order)}
    assert len(order) == 500
    for n in nodes:
        for dep in n.dependencies:
            assert position[dep] < position[n.node_id]


def test_validation_of_a_large_chain_is_linear_enough_to_be_instant() -> None:
    nodes = [node("n0")] + [node(f"n{i}", f"n{i - 1}") for i in range(1, 10_000)]
    assert find_problems(nodes, HANDLERS, Limits()) == []
    # a cycle closing the whole chain is found and named in full
    nodes[0] = node("n0", "n9999")
    (cycle,) = find_cycles(nodes)
    assert len(cycle) == 10_000


def test_dependents_map_inverts_dependencies_and_ignores_duplicates() -> None:
    deps = dependents_map([node("a"), node("b", "a", "a"), node("c", "a", "b")])
    assert deps == {"a": ["b", "c"], "b": ["c"], "c": []}


def deps_of(nodes: list[NodeSpec]) -> dict[str, list[str]]:
    return {n.node_id: sorted(n.dependencies) for n in nodes}


def test_step_order_depends_on_every_node_of_the_greatest_lower_order() -> None:
    nodes = [
        node("s1", step_order=0),
        node("s2", step_order=1),
        node("s3", step_order=1),
        node("s4", step_order=5),
        node("s5", step_order=6),
        node("explicit", "s1", step_order=6),
        node("free"),
    ]
    assert deps_of(with_step_order_dependencies(nodes, Limits())) == {
        "s1": [],
        "s2": ["s1"],
        "s3": ["s1"],
        "s4": ["s2", "s3"],
        "s5": ["s4"],
        "explicit": ["s1"],
        "free": [],
    }


def test_step_orders_that_would_make_too_many_edges_are_refused_before_expanding() -> None:
    wide = [node(f"a{i}", step_order=0) for i in range(300)] + [node(f"b{i}", step_order=1) for i in range(400)]
    with pytest.raises(InvalidWorkflowError) as info:
        with_step_order_dependencies(wide, Limits(max_edges=100_000))
    assert [p.code for p in info.value.problems] == ["too_many_dependencies"]
    assert len(with_step_order_dependencies(wide, Limits(max_edges=120_000))) == 700


def test_size_limits() -> None:
    assert [p.code for p in size_problems(11, 5, Limits(max_nodes=10, max_edges=5))] == ["too_many_nodes"]
    assert [p.code for p in size_problems(10, 6, Limits(max_nodes=10, max_edges=5))] == ["too_many_dependencies"]


def test_a_new_node_is_checked_against_the_nodes_it_names() -> None:
    problems = new_node_problems(node("b", "a", "zz", "b"), {"a", "b"}, 3, 2, HANDLERS, Limits(max_nodes=3))
    assert {(p.field, p.code) for p in problems} == {
        ("nodes", "too_many_nodes"),
        ("id", "duplicate_node_id"),
        ("dependencies", "unknown_dependency"),
        ("dependencies", "self_dependency"),
    }
    assert new_node_problems(node("c", "a"), {"a"}, 3, 2, HANDLERS, Limits()) == []


def test_an_unclosed_template_is_reported_with_its_node_and_field() -> None:
    nodes = [
        node("a"),
        node("b", "a", config={"body": "{{ a.result"}),
        node("c", "a", config={"headers": {"x": "{{ a.ok }} and a.id }}"}}),
        node("d", "a", config={"url": "https://x/${a.output.id"}),
        node("e", "a", when="a.ok }}"),
        node("ok", "a", config={"body": '{"a": {"b": "{{ a.ok }}"}}', "json": '{"a": {"b": 1}}', "p": "$${x"}),
    ]
    assert codes(nodes) == [
        ("b", "config.body", "invalid_template"),
        ("c", "config.headers.x", "invalid_template"),
        ("d", "config.url", "invalid_template"),
        ("e", "when", "invalid_template"),
    ]
