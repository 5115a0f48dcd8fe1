"""Workflow DAGs: structural validation with Kahn's algorithm, O(V+E).

Everything here is pure: callers pass in the handler names they know, and get
back every problem at once so a user can fix a definition in one round.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from app.domain import retry, templates
from app.domain.errors import InvalidWorkflowError, Problem
from app.domain.trigger_rules import TriggerRule

NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")
# Templates say `{{ input.x }}` for the execution input and `nodes["id"]` for a
# node by id, so no node may be called either.
RESERVED_NODE_IDS = frozenset({templates.INPUT, templates.NODES})


@dataclass(frozen=True)
class Limits:
    max_nodes: int = 10_000
    # Dependencies summed over all nodes: bounds the work and storage of one
    # definition (step orders can multiply them: m steps after n is m*n edges).
    max_edges: int = 100_000
    max_config_bytes: int = 10 * 1024
    max_timeout_seconds: int = 3600


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    handler: str
    dependencies: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: int | None = None
    step_order: int | None = None
    # Overrides of its handler's retry policy: max_attempts, backoff_seconds, max_backoff_seconds.
    retry: Mapping[str, Any] | None = None
    trigger_rule: str = TriggerRule.ALL_SUCCESS
    when: str | None = None  # a guard over ancestors' outputs: false means SKIPPED
    branch: bool | None = None  # run on this result of its conditional parent, else SKIPPED
    condition: str | None = None  # a guard in peer-a's grammar (app/domain/peer_a.py)


CONDITIONAL = "conditional"  # the handler whose `result` a `branch` follows


def effective_guard(node: NodeSpec, handlers_of: Mapping[str, str]) -> str | None:
    """The guard expression a node runs under: its branch (on its one conditional
    parent) and its `when`, both if both are set."""
    parts = []
    if node.branch is not None:
        parents = [d for d in dict.fromkeys(node.dependencies) if handlers_of.get(d) == CONDITIONAL]
        if len(parents) == 1:
            parts.append(f"nodes[{json.dumps(parents[0])}].result == {'true' if node.branch else 'false'}")
    if node.when:
        parts.append(f"({node.when})")
    return " and ".join(parts) or None


def find_problems(
    nodes: Sequence[NodeSpec], known_handlers: Collection[str], limits: Limits, foreign: Collection[str] = ()
) -> list[Problem]:
    """Every structural problem of a DAG, in a stable order; empty when it is valid.
    `foreign`: nodes whose handlers follow another engine's rules (peer-a's): their ids and
    templates are that engine's to judge, not Stepwise's."""
    if not nodes:
        return [Problem("nodes", "a workflow needs at least one node", "empty_dag")]
    problems = size_problems(len(nodes), sum(len(n.dependencies) for n in nodes), limits)
    seen: set[str] = set()
    for node in nodes:
        problems.extend(_node_problems(node, known_handlers, limits, node.node_id in foreign))
        if node.node_id in seen:
            problems.append(Problem("id", f"node id {node.node_id!r} is used twice", "duplicate_node_id", node.node_id))
        seen.add(node.node_id)
    for node in nodes:
        for dep in node.dependencies:
            if dep == node.node_id:
                problems.append(
                    Problem("dependencies", "a node cannot depend on itself", "self_dependency", node.node_id)
                )
            elif dep not in seen:
                problems.append(
                    Problem(
                        "dependencies",
                        f"unknown dependency {dep!r}",
                        "unknown_dependency",
                        node.node_id,
                        details={"dependency": dep},
                    )
                )
    cycles = find_cycles(nodes)
    for cycle in cycles:
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(
            Problem(
                "dependencies",
                f"dependency cycle: {path} (each node depends on the next)",
                "cycle",
                cycle[0],
                details={"cycle": cycle},
            )
        )
    if not cycles:
        problems.extend(template_problems(nodes, skip=foreign))
    return problems


def template_problems(nodes: Sequence[NodeSpec], only: str | None = None, skip: Collection[str] = ()) -> list[Problem]:
    """Templates and guards at most MAX_TEMPLATE_CHARS long, that parse, and that read
    only the input or an ancestor of their node (an output that exists by the time it
    runs); a branch needs exactly one conditional parent. `only`: check that node alone;
    `skip`: not these."""
    problems: list[Problem] = []
    ancestors: dict[str, int] | None = None
    index: dict[str, int] = {}
    handlers_of = {n.node_id: n.handler for n in nodes}
    for node in nodes:
        if (only is not None and node.node_id != only) or node.node_id in skip:
            continue
        problems.extend(_branch_problems(node, handlers_of))
        checked = [(f"config.{path}", text) for path, text in templates.walk(node.config)]
        if node.when:
            checked.append(("when", "{{ " + node.when + " }}"))
        for where, text in checked:
            if len(text) > templates.MAX_TEMPLATE_CHARS:
                problems.append(
                    Problem(
                        where,
                        f"a template is at most {templates.MAX_TEMPLATE_CHARS} characters ({len(text)} given)",
                        "template_too_long",
                        node.node_id,
                    )
                )
                continue
            try:
                roots = templates.references(text)
            except templates.TemplateResolutionError as err:
                problems.append(Problem(where, str(err), "invalid_template", node.node_id))
                continue
            if ancestors is None:
                ancestors, index = _ancestor_sets(nodes)
            for root in sorted(roots - {templates.INPUT}):
                if root not in index or not ancestors[node.node_id] >> index[root] & 1:
                    problems.append(
                        Problem(
                            where,
                            f"the template reads {root!r}, which is not an ancestor of {node.node_id!r}",
                            "template_not_an_ancestor",
                            node.node_id,
                            details={"reference": root},
                        )
                    )
    return problems


def _branch_problems(node: NodeSpec, handlers_of: Mapping[str, str]) -> list[Problem]:
    if node.branch is None:
        return []
    parents = [d for d in dict.fromkeys(node.dependencies) if handlers_of.get(d) == CONDITIONAL]
    if len(parents) == 1:
        return []
    message = (
        "`branch` needs a conditional parent"
        if not parents
        else f"`branch` is ambiguous with {len(parents)} conditional parents; use `when` instead"
    )
    return [Problem("branch", message, "invalid_branch", node.node_id)]


def _ancestor_sets(nodes: Sequence[NodeSpec]) -> tuple[dict[str, int], dict[str, int]]:
    """Each node's ancestors as a bitset (a Python int), built in topological order: O(V*(V+E)/64)."""
    order, _ = topological_order(nodes)
    graph = _graph(nodes)
    index = {node_id: i for i, node_id in enumerate(order)}
    ancestors: dict[str, int] = {}
    for node_id in order:
        bits = 0
        for dep in graph[node_id]:
            bits |= ancestors[dep] | 1 << index[dep]
        ancestors[node_id] = bits
    return ancestors, index


def size_problems(node_count: int, edge_count: int, limits: Limits) -> list[Problem]:
    """Problems of a DAG with this many nodes and dependencies."""
    problems = []
    if node_count > limits.max_nodes:
        problems.append(
            Problem(
                "nodes",
                f"{node_count} nodes is more than the limit of {limits.max_nodes}",
                "too_many_nodes",
                details={"limit": limits.max_nodes, "count": node_count},
            )
        )
    if edge_count > limits.max_edges:
        problems.append(
            Problem(
                "nodes",
                f"{edge_count} dependencies in all is more than the limit of {limits.max_edges}",
                "too_many_dependencies",
                details={"limit": limits.max_edges, "count": edge_count},
            )
        )
    return problems


def new_node_problems(
    node: NodeSpec,
    existing: Collection[str],
    node_count: int,
    edge_count: int,
    known_handlers: Collection[str],
    limits: Limits,
) -> list[Problem]:
    """Problems of one node added to a DAG whose nodes (those of interest) are `existing`.

    Its dependencies must already exist and nothing depends on it yet, so it
    cannot close a cycle: no need to look at the rest of the graph.
    """
    problems = size_problems(node_count + 1, edge_count + len(node.dependencies), limits)
    problems.extend(_node_problems(node, known_handlers, limits))
    if node.node_id in existing:
        problems.append(Problem("id", f"node id {node.node_id!r} is used twice", "duplicate_node_id", node.node_id))
    for dep in node.dependencies:
        if dep == node.node_id:
            problems.append(Problem("dependencies", "a node cannot depend on itself", "self_dependency", node.node_id))
        elif dep not in existing:
            problems.append(
                Problem(
                    "dependencies",
                    f"unknown dependency {dep!r}",
                    "unknown_dependency",
                    node.node_id,
                    details={"dependency": dep},
                )
            )
    return problems


def _node_problems(
    node: NodeSpec, known_handlers: Collection[str], limits: Limits, foreign: bool = False
) -> Iterable[Problem]:
    if foreign:
        if not 1 <= len(node.node_id) <= 100 or "\x00" in node.node_id:
            yield Problem("id", "a node id is 1 to 100 characters", "invalid_node_id", node.node_id)
    elif not NODE_ID_PATTERN.match(node.node_id):
        yield Problem(
            "id",
            "a node id is 1 to 100 letters, digits, '_' or '-', not starting with '-'",
            "invalid_node_id",
            node.node_id,
        )
    elif node.node_id in RESERVED_NODE_IDS:
        yield Problem("id", f"{node.node_id!r} is reserved for the execution input", "reserved_node_id", node.node_id)
    if node.handler not in known_handlers:
        yield Problem("handler", f"unknown handler {node.handler!r}", "unknown_handler", node.node_id)
    yield from config_size_problems(node, limits)
    if node.trigger_rule not in set(TriggerRule):
        yield Problem(
            "trigger_rule",
            f"unknown trigger rule {node.trigger_rule!r}; one of {', '.join(TriggerRule)}",
            "invalid_trigger_rule",
            node.node_id,
        )
    for field_name, message in retry.policy_problems(node.retry or {}):
        yield Problem(field_name, message, "invalid_retry", node.node_id)
    if node.timeout_seconds is not None and not 1 <= node.timeout_seconds <= limits.max_timeout_seconds:
        yield Problem(
            "timeout_seconds",
            f"timeout_seconds must be between 1 and {limits.max_timeout_seconds}",
            "invalid_timeout",
            node.node_id,
        )


def config_size_problems(node: NodeSpec, limits: Limits) -> list[Problem]:
    """A config over MAX_NODE_CONFIG_BYTES, as JSON."""
    size = len(json.dumps(node.config, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size <= limits.max_config_bytes:
        return []
    return [
        Problem(
            "config",
            f"config is {size} bytes, over the limit of {limits.max_config_bytes}",
            "config_too_large",
            node.node_id,
            details={"limit": limits.max_config_bytes, "size": size},
        )
    ]


def _graph(nodes: Sequence[NodeSpec]) -> dict[str, list[str]]:
    """Node id -> its distinct known dependencies (self and unknown ones left out)."""
    graph: dict[str, list[str]] = {}
    for node in nodes:
        graph.setdefault(node.node_id, [])
    for node in nodes:
        deps = graph[node.node_id]
        if deps:
            continue  # a duplicate id: the first definition counts
        # dict.fromkeys: distinct, in the order given
        deps.extend(d for d in dict.fromkeys(node.dependencies) if d != node.node_id and d in graph)
    return graph


def topological_order(nodes: Sequence[NodeSpec]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm: (the nodes in a valid run order, the nodes left in or behind a cycle)."""
    graph = _graph(nodes)
    indegree = {node_id: len(deps) for node_id, deps in graph.items()}
    dependents: dict[str, list[str]] = {node_id: [] for node_id in graph}
    for node_id, deps in graph.items():
        for dep in deps:
            dependents[dep].append(node_id)
    ready = deque(node_id for node_id, count in indegree.items() if count == 0)
    order: list[str] = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for child in dependents[node_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order, [node_id for node_id, count in indegree.items() if count > 0]


def find_cycles(nodes: Sequence[NodeSpec]) -> list[list[str]]:
    """Each distinct cycle once, as the node ids along it (each depends on the next).

    Every node Kahn's algorithm leaves behind has a dependency that was also left
    behind, so walking those dependencies from any of them must close a loop.
    """
    _, leftover = topological_order(nodes)
    if not leftover:
        return []
    graph = _graph(nodes)
    stuck = set(leftover)
    visited: set[str] = set()
    cycles: list[list[str]] = []
    for start in leftover:
        if start in visited:
            continue
        path: list[str] = []
        position: dict[str, int] = {}
        current = start
        while current not in visited:
            visited.add(current)
            position[current] = len(path)
            path.append(current)
            current = next(dep for dep in graph[current] if dep in stuck)
        if current in position:  # closed a loop on this walk, not an earlier one
            cycles.append(path[position[current] :])
    return cycles


def dependents_map(nodes: Sequence[NodeSpec]) -> dict[str, list[str]]:
    """Node id -> the ids of the nodes that depend on it directly."""
    graph = _graph(nodes)
    dependents: dict[str, list[str]] = {node_id: [] for node_id in graph}
    for node_id, deps in graph.items():
        for dep in deps:
            dependents[dep].append(node_id)
    return dependents


def with_step_order_dependencies(nodes: Sequence[NodeSpec], limits: Limits) -> list[NodeSpec]:
    """Peer-d's linear steps: a node with a step_order and no dependencies depends on
    every node of the greatest lower order. The nodes with those dependencies
    filled in, in O(V + E); InvalidWorkflowError if that would break the limits."""
    by_order: dict[int, list[str]] = {}
    for node in nodes:
        if node.step_order is not None:
            by_order.setdefault(node.step_order, []).append(node.node_id)
    if not by_order:
        return list(nodes)
    orders = sorted(by_order)
    previous = {order: by_order[orders[i - 1]] if i else [] for i, order in enumerate(orders)}
    implied = [
        previous[n.step_order] if n.step_order is not None and not n.dependencies else n.dependencies for n in nodes
    ]
    problems = size_problems(len(nodes), sum(len(deps) for deps in implied), limits)
    if problems:
        raise InvalidWorkflowError("the workflow is too big", problems=problems)
    return [
        n if deps is n.dependencies else replace(n, dependencies=tuple(deps))
        for n, deps in zip(nodes, implied, strict=True)
    ]
