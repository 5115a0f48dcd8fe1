"""A peer-a submit body as Stepwise's nodes: checked in peer-a's order (the first problem
wins, shared/reference/peer-a-contract.md 2.3), refused in peer-a's words, and translated
to the `peer_a.*` handlers with peer-a's rules (a skipped parent satisfies its children,
a root's `condition` is ignored, no node timeout)."""

from __future__ import annotations

import math
from typing import Any

from app.domain import dag
from app.domain.trigger_rules import TriggerRule
from app.handlers import peer_a as peer_a_handlers
from app.handlers import registry

MAX_NAME = 255


class PeerAError(Exception):
    """A domain error as peer-a answers it: {"error": {message, error_code, context}}."""

    def __init__(self, status: int, code: str, message: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.context = status, code, message, context or {}


class PeerAValidationError(Exception):
    """A request that fails validation, as FastAPI answers it: 422 {"detail": [...]}."""

    def __init__(self, loc: list[str | int], msg: str, value: Any, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.detail = [{"type": kind, "loc": loc, "msg": msg, "input": value}]


def submission(body: Any) -> tuple[str, Any, float | None]:
    """(name, nodes, timeout_seconds) of a submit body, or PeerAValidationError as FastAPI says it."""
    if not isinstance(body, dict):
        raise PeerAValidationError(["body"], "Input should be a valid dictionary", body, "dict_type")
    if "name" not in body:
        raise PeerAValidationError(["body", "name"], "Field required", body, "missing")
    name = body["name"]
    if not isinstance(name, str):
        raise PeerAValidationError(["body", "name"], "Input should be a valid string", name, "string_type")
    if not 1 <= len(name) <= MAX_NAME:
        raise PeerAValidationError(["body", "name"], f"String should have 1 to {MAX_NAME} characters", name,
                                   "string_length")  # fmt: skip
    if "dag" not in body:
        raise PeerAValidationError(["body", "dag"], "Field required", body, "missing")
    graph = body["dag"]
    if not isinstance(graph, dict):
        raise PeerAValidationError(["body", "dag"], "Input should be a valid dictionary", graph, "dict_type")
    return name, graph.get("nodes"), _timeout(body.get("timeout_seconds"))


def _timeout(value: Any) -> float | None:
    """A deadline in seconds > 0 (fractions allowed; a numeric string too, as FastAPI's lax parsing)."""
    if value is None:
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise PeerAValidationError(["body", "timeout_seconds"], "Input should be greater than 0", value)
    return seconds


def node_specs(nodes: Any) -> list[dag.NodeSpec]:
    """peer-a's nodes as Stepwise's, or the first problem as peer-a reports it."""
    if not nodes:
        raise PeerAError(400, "EMPTY_WORKFLOW", "Workflow must contain at least one node", {"error": "empty_workflow"})
    if not isinstance(nodes, list):
        raise PeerAError(400, "INVALID_NODE", "dag.nodes must be a list of nodes")
    seen: set[str] = set()
    specs = [_node_spec(position, node, seen) for position, node in enumerate(nodes)]
    for spec in specs:
        for dependency in spec.dependencies:
            if dependency not in seen:
                raise PeerAError(
                    400,
                    "INVALID_NODE_REFERENCE",
                    f"Node {spec.node_id} references missing dependency {dependency}",
                    {"node_id": spec.node_id, "missing_dependency": dependency},
                )
    # A node that depends on itself is a cycle of one (Kahn's algorithm never frees it).
    looped = [spec.node_id for spec in specs if spec.node_id in spec.dependencies]
    _, left = dag.topological_order(specs)
    cycle = sorted({*looped, *left}, key=[s.node_id for s in specs].index)
    if cycle:
        raise PeerAError(400, "CYCLIC_DEPENDENCY", f"Workflow contains a cycle among nodes {cycle}",
                         {"cycle_nodes": cycle})  # fmt: skip
    return specs


def _node_spec(position: int, node: Any, seen: set[str]) -> dag.NodeSpec:
    if not isinstance(node, dict):
        raise PeerAError(400, "INVALID_NODE", f"Node {position} is not an object", {"index": position})
    node_id, handler = node.get("id"), node.get("handler")
    if not isinstance(node_id, str) or not node_id or not isinstance(handler, str) or not handler:
        raise PeerAError(400, "INVALID_NODE", f"Node {position} needs a string id and handler", {"index": position})
    if node_id in seen:
        raise PeerAError(400, "DUPLICATE_NODE_ID", f"Duplicate node ID: {node_id}", {"node_id": node_id})
    seen.add(node_id)
    if peer_a_handlers.PREFIX + handler not in registry.names():
        # peer-a takes any name and leaves the node hanging at run time; refused here instead.
        known = sorted(n.removeprefix(peer_a_handlers.PREFIX) for n in registry.names()
                       if n.startswith(peer_a_handlers.PREFIX))  # fmt: skip
        raise PeerAError(
            400,
            "INVALID_NODE",
            f"Node {node_id} has unknown handler {handler!r}; known handlers: {', '.join(known)}",
            {"node_id": node_id, "handler": handler, "known_handlers": known},
        )
    dependencies, config, condition = node.get("dependencies", []), node.get("config") or {}, node.get("condition")
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: dependencies must be a list of node ids",
                         {"node_id": node_id})  # fmt: skip
    if not isinstance(config, dict):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: config must be an object", {"node_id": node_id})
    text_key = {"call_external_service": "url", "call_llm": "prompt"}.get(handler)
    if text_key in config and not isinstance(config[text_key], str):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: config.{text_key} must be a string",
                         {"node_id": node_id})  # fmt: skip
    if condition is not None and not isinstance(condition, str):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: condition must be a string", {"node_id": node_id})
    return dag.NodeSpec(
        node_id,
        peer_a_handlers.PREFIX + handler,
        tuple(dependencies),
        config,
        # peer-a has no node timeout: a delay waits as long as it says (up to its limit).
        timeout_seconds=peer_a_handlers.MAX_DELAY_SECONDS if handler == "delay" else None,
        # A skipped node satisfies its dependents (peer-a does not propagate skips); a
        # failure ends the execution anyway (fail fast).
        trigger_rule=TriggerRule.NONE_FAILED,
        # peer-a ignores a root's condition: roots always run.
        condition=(condition or None) if dependencies else None,
    )
