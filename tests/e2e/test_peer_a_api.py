"""peer-a's API, as its clients use it (shared/reference/peer-a-contract.md): no key, its
bodies and key order, its handlers, templates, `condition`, fail fast, deadlines and DLQ.
The payloads are re-created here from the contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import port_for
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from tests.support import WorkerPool, wait_for

FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def peer_app(settings: Settings) -> Flask:
    """Stepwise as a peer-a client meets it: keyless callers admitted on the peers' paths."""
    return create_app(replace(settings, peer_keyless_role="admin"))


@pytest.fixture
def peer(peer_app: Flask, workers: WorkerPool) -> FlaskClient:
    return peer_app.test_client()  # no key, as peer-a's clients send none


def submit(peer: FlaskClient, nodes: list[dict[str, Any]], **extra: Any) -> str:
    body = {"name": f"pa-{uuid.uuid4().hex[:8]}", "dag": {"nodes": nodes}, **extra}
    response = peer.post("/api/v1/workflow", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.json["execution_id"])


def run(peer: FlaskClient, nodes: list[dict[str, Any]], params: dict[str, Any] | None = None, **extra: Any) -> str:
    execution_id = submit(peer, nodes, **extra)
    body = {"params": params} if params is not None else None
    triggered = peer.post(f"/api/v1/workflow/trigger/{execution_id}", json=body)
    assert triggered.status_code == 200, triggered.get_data(as_text=True)
    return execution_id


def settle(peer: FlaskClient, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = peer.get(f"/api/v1/workflow/{execution_id}").json
        return body if body["status"] in FINISHED else None

    return wait_for(done, timeout=timeout)


def outputs(peer: FlaskClient, execution_id: str) -> dict[str, Any]:
    return peer.get(f"/api/v1/workflow/{execution_id}/results").json["outputs"]


CONDITIONAL_BRANCHING = [
    {"id": "start", "handler": "input", "dependencies": []},
    {"id": "is_yes", "handler": "decision", "dependencies": ["start"],
     "config": {"value_a": "{{ start.data }}", "operator": "==", "value_b": "yes"}},
    {"id": "true_branch", "handler": "call_external_service", "dependencies": ["is_yes"],
     "condition": "{{ is_yes.result }} == True", "config": {"url": "http://mock.service/true"}},
    {"id": "false_branch", "handler": "call_external_service", "dependencies": ["is_yes"],
     "condition": "{{ is_yes.result }} == False", "config": {"url": "http://mock.service/false"}},
]  # fmt: skip


def test_the_submit_trigger_status_results_cycle_answers_peer_a_s_bodies_in_its_key_order(peer: FlaskClient) -> None:
    echo = {"id": "a", "handler": "echo", "config": {"message": "hi"}}
    submitted = peer.post("/api/v1/workflow", json={"name": "shapes", "dag": {"nodes": [echo]}})
    assert submitted.status_code == 201
    text = submitted.get_data(as_text=True)
    assert text.startswith('{"workflow_id":"') and '"message":"Workflow submitted successfully"}' in text
    execution_id = submitted.json["execution_id"]
    pending = peer.get(f"/api/v1/workflow/{execution_id}")
    assert pending.get_data(as_text=True) == json.dumps(
        {"execution_id": execution_id, "workflow_id": submitted.json["workflow_id"], "status": "PENDING",
         "node_statuses": {"a": "PENDING"}}, separators=(",", ":"))  # fmt: skip
    assert peer.get(f"/api/v1/workflow/{execution_id}/results").json["outputs"] == {}
    triggered = peer.post(f"/api/v1/workflow/trigger/{execution_id}")  # no body, no Content-Type
    assert (
        triggered.get_data(as_text=True)
        == f'{{"execution_id":"{execution_id}","message":"Workflow execution triggered"}}'
    )
    done = settle(peer, execution_id)
    assert done["status"] == "COMPLETED" and done["node_statuses"] == {"a": "COMPLETED"}
    assert peer.get(f"/api/v1/workflow/{execution_id}").get_data(as_text=True).count('"status":') == 1
    results = peer.get(f"/api/v1/workflow/{execution_id}/results")
    assert results.get_data(as_text=True).startswith(f'{{"execution_id":"{execution_id}","workflow_id":"')
    assert results.json["outputs"] == {"a": {"message": "hi"}}
    again = peer.post(f"/api/v1/workflow/trigger/{execution_id}")  # a finished one: 200, nothing happens
    assert again.status_code == 200 and settle(peer, execution_id)["status"] == "COMPLETED"


def test_conditional_branching_runs_as_peer_a_s_worked_example(peer: FlaskClient) -> None:
    execution_id = run(peer, CONDITIONAL_BRANCHING)
    done = settle(peer, execution_id)
    assert done["status"] == "COMPLETED"
    assert done["node_statuses"] == {"start": "COMPLETED", "is_yes": "COMPLETED", "true_branch": "SKIPPED",
                                     "false_branch": "COMPLETED"}  # fmt: skip
    found = outputs(peer, execution_id)
    assert set(found) == {"start", "is_yes", "false_branch"}
    assert found["start"] == {"initialized": True} and found["is_yes"] == {"result": False}
    branch = found["false_branch"]
    assert branch["status_code"] == 200 and branch["url"] == "http://mock.service/false"
    assert branch["data"]["result"] == "Mock response from http://mock.service/false"


def test_templates_read_any_completed_node_in_python_text_and_leave_a_miss_as_written(peer: FlaskClient) -> None:
    nodes = [
        {"id": "input", "handler": "input", "config": {"document": "report.pdf", "count": 5, "ok": True}},
        {"id": "fetch_data", "handler": "call_external_service", "dependencies": ["input"],
         "config": {"url": "http://api.example.com/{{ input.document }}", "method": "GET"}},
        {"id": "summarize", "handler": "call_llm", "dependencies": ["fetch_data"], "timeout_seconds": 5,
         "config": {"prompt": "Summarize {{fetch_data.data}} and {{ fetch_data.response }}", "max_tokens": 200}},
        {"id": "report", "handler": "output", "dependencies": ["summarize"],
         "config": {"n": "{{ input.count }}", "flag": "{{ input.ok }}", "who": "{{ params.user }}",
                    "answer": "{{ summarize.response }}", "deep": ["{{ input.document }}", {"k": "{{ nope.x }}"}]}},
    ]  # fmt: skip
    execution_id = run(peer, nodes, params={"user": "ada"})
    assert settle(peer, execution_id)["status"] == "COMPLETED"
    found = outputs(peer, execution_id)
    assert found["params"] == {"user": "ada"}
    assert found["fetch_data"]["url"] == "http://api.example.com/report.pdf"
    prompt = found["summarize"]["prompt"]
    assert prompt.startswith("Summarize {'id': ") and "'result': 'Mock response from http" in prompt
    assert prompt.endswith(" and {{ fetch_data.response }}")  # no such key: left exactly as written
    assert found["summarize"]["max_tokens"] == 200 and 100 <= found["summarize"]["tokens_used"] <= 200
    config = found["report"]["config"]
    assert found["report"]["aggregated"] is True
    assert config == {"n": "5", "flag": "True", "who": "ada", "answer": found["summarize"]["response"],
                      "deep": ["report.pdf", {"k": "{{ nope.x }}"}]}  # fmt: skip


def test_a_failure_fails_fast_with_a_dead_letter_in_peer_a_s_shape_whose_retry_runs_the_node_again(
    peer: FlaskClient,
) -> None:
    nodes = [
        {"id": "boom", "handler": "call_external_service", "config": {"url": "http://x", "simulate_failure": True}},
        {"id": "slow", "handler": "delay", "config": {"seconds": 30}},
        {"id": "after", "handler": "echo", "dependencies": ["boom"]},
    ]
    execution_id = run(peer, nodes)
    done = settle(peer, execution_id, timeout=40)
    assert done["status"] == "FAILED"
    assert done["node_statuses"] == {"boom": "FAILED", "slow": "FAILED", "after": "FAILED"}  # at once: fail fast
    assert outputs(peer, execution_id) == {}
    listing = peer.get("/api/v1/admin/dlq", query_string={"limit": 1000})
    assert listing.status_code == 200 and listing.json["count"] >= 1
    (entry,) = [e for e in listing.json["entries"] if e["execution_id"] == execution_id]
    assert list(entry) == ["id", "task_id", "execution_id", "node_id", "handler", "error_message", "retry_count",
                           "original_timestamp", "failed_at", "error_detail"]  # fmt: skip
    assert entry["task_id"] == f"{execution_id}:boom" and entry["handler"] == "call_external_service"
    assert entry["error_message"] == "Simulated failure for external service at http://x"
    assert entry["retry_count"] == 3 and entry["original_timestamp"].endswith("+00:00")
    detail = entry["error_detail"]
    assert (
        detail["error_code"] == "Exception" and detail["category"] == "unknown" and len(detail["traceback_hash"]) == 12
    )
    assert f'"id":"{entry["id"]}","task_id":"{execution_id}:boom","execution_id":"{execution_id}"' in listing.get_data(
        as_text=True
    )
    retried = peer.post(f"/api/v1/admin/dlq/{entry['id']}/retry")
    assert retried.json == {
        "status": "success",
        "message": "Task re-submitted to queue",
        "task_id": f"{execution_id}:boom",
    }
    assert peer.get(f"/api/v1/workflow/{execution_id}").json["status"] == "RUNNING"  # it really runs again
    assert settle(peer, execution_id, timeout=40)["status"] == "FAILED"  # and fails again: a new entry
    entries = [e for e in peer.get("/api/v1/admin/dlq").json["entries"] if e["execution_id"] == execution_id]
    assert len(entries) == 1 and entries[0]["id"] != entry["id"]
    deleted = peer.delete(f"/api/v1/admin/dlq/{entries[0]['id']}")
    assert deleted.json == {"status": "success", "message": f"DLQ entry {entries[0]['id']} deleted"}
    for path in (f"/api/v1/admin/dlq/{entries[0]['id']}", "/api/v1/admin/dlq/not-an-id"):
        gone = peer.delete(path)
        assert gone.status_code == 404 and gone.json == {"detail": f"DLQ entry {path.rsplit('/', 1)[1]} not found"}
    assert peer.post("/api/v1/admin/dlq/not-an-id/retry").status_code == 404
    assert peer.get("/api/v1/admin/dlq", query_string={"limit": "x"}).status_code == 422


def test_a_sub_second_deadline_fails_the_execution_and_marks_its_unfinished_nodes_failed(peer: FlaskClient) -> None:
    execution_id = run(peer, [{"id": "slow", "handler": "call_external_service"}, {"id": "then", "handler": "echo",
                                                                                    "dependencies": ["slow"]}],
                       timeout_seconds=0.05)  # fmt: skip
    done = settle(peer, execution_id, timeout=15)
    assert done["status"] == "FAILED" and done["node_statuses"] == {"slow": "FAILED", "then": "FAILED"}
    assert outputs(peer, execution_id) == {}  # the call that finished after the deadline does not count


def test_cancel_answers_success_once_and_a_finished_execution_never_changes(peer: FlaskClient) -> None:
    execution_id = run(peer, [{"id": "wait", "handler": "delay", "config": {"seconds": 20}}])
    cancelled = peer.delete(f"/api/v1/workflow/{execution_id}")
    assert cancelled.json == {"status": "success", "message": f"Execution {execution_id} cancelled"}
    assert peer.get(f"/api/v1/workflow/{execution_id}").json["status"] == "CANCELLED"
    again = peer.delete(f"/api/v1/workflow/{execution_id}")
    assert again.status_code == 409 and again.json["error"]["error_code"] == "INVALID_STATUS_TRANSITION"
    assert peer.post(f"/api/v1/workflow/trigger/{execution_id}").status_code == 200  # and changes nothing
    assert peer.get(f"/api/v1/workflow/{execution_id}").json["status"] == "CANCELLED"


@pytest.mark.parametrize(
    "nodes,code,context",
    [
        ([], "EMPTY_WORKFLOW", {"error": "empty_workflow"}),
        ([{"id": "a", "handler": "echo"}, {"id": "a", "handler": "echo"}], "DUPLICATE_NODE_ID", {"node_id": "a"}),
        ([{"id": "a", "handler": "echo", "dependencies": ["ghost"]}], "INVALID_NODE_REFERENCE",
         {"node_id": "a", "missing_dependency": "ghost"}),
        ([{"id": "a", "handler": "echo", "dependencies": ["b"]}, {"id": "b", "handler": "echo", "dependencies": ["a"]},
          {"id": "c", "handler": "echo", "dependencies": ["b"]}], "CYCLIC_DEPENDENCY",
         {"cycle_nodes": ["a", "b", "c"]}),
        ([{"id": "a", "handler": "echo", "dependencies": ["a"]}, {"id": "b", "handler": "echo"}],
         "CYCLIC_DEPENDENCY", {"cycle_nodes": ["a"]}),
        ([{"id": "a", "handler": "no_such"}], "INVALID_NODE",
         {"node_id": "a", "handler": "no_such", "known_handlers": ["call_external_service", "call_llm", "decision",
                                                                  "delay", "echo", "input", "output"]}),
        ([{"handler": "echo"}], "INVALID_NODE", {"index": 0}),
        ([{"id": "a", "handler": "call_external_service", "config": {"url": 5}}], "INVALID_NODE", {"node_id": "a"}),
    ],
    ids=["empty", "duplicate", "missing dependency", "cycle", "self-dependency", "unknown handler", "no id",
         "url not text"],
)  # fmt: skip
def test_an_invalid_dag_is_a_400_naming_its_first_problem_in_peer_a_s_shape(
    peer: FlaskClient, nodes: list[Any], code: str, context: dict[str, Any]
) -> None:
    response = peer.post("/api/v1/workflow", json={"name": "bad", "dag": {"nodes": nodes}})
    assert response.status_code == 400
    error = response.json["error"]
    assert error["error_code"] == code and error["message"] and error["context"] == context


def test_what_peer_a_accepts_is_accepted(peer: FlaskClient) -> None:
    nodes = [
        {"id": "input", "handler": "input", "timeout_seconds": 0.5, "retry": {"max": 9}, "description": "ignored"},
        {"id": "out put", "handler": "output", "dependencies": ["input"], "condition": None},
    ]
    # a 255-character name; a numeric string for the deadline, as FastAPI's lax parsing takes
    execution_id = run(peer, nodes, timeout_seconds="30", name="n" * 255)
    assert settle(peer, execution_id)["status"] == "COMPLETED"
    assert set(outputs(peer, execution_id)) == {"input", "out put"}


@pytest.mark.parametrize(
    "body,where",
    [
        ({"dag": {"nodes": [{"id": "a", "handler": "echo"}]}}, ["body", "name"]),
        ({"name": "", "dag": {"nodes": []}}, ["body", "name"]),
        ({"name": "x"}, ["body", "dag"]),
        ({"name": "x", "dag": [1]}, ["body", "dag"]),
        ({"name": "x", "dag": {"nodes": [{"id": "a", "handler": "echo"}]}, "timeout_seconds": 0},
         ["body", "timeout_seconds"]),
    ],
    ids=["no name", "empty name", "no dag", "dag not an object", "zero deadline"],
)  # fmt: skip
def test_a_body_that_fails_validation_is_fastapi_s_422(
    peer: FlaskClient, body: dict[str, Any], where: list[str]
) -> None:
    response = peer.post("/api/v1/workflow", json=body)
    assert response.status_code == 422
    (problem,) = response.json["detail"]
    assert problem["loc"] == where and problem["msg"] and problem["type"]


def test_unknown_executions_are_peer_a_s_404_whatever_the_id(peer: FlaskClient) -> None:
    for execution_id in (str(uuid.uuid4()), "not-a-uuid"):
        for method, path in (("post", f"/api/v1/workflow/trigger/{execution_id}"),
                             ("get", f"/api/v1/workflow/{execution_id}"),
                             ("get", f"/api/v1/workflow/{execution_id}/results"),
                             ("delete", f"/api/v1/workflow/{execution_id}")):  # fmt: skip
            response = getattr(peer, method)(path)
            assert response.status_code == 404, path
            assert response.json["error"]["error_code"] == "EXECUTION_NOT_FOUND"
            assert response.json["error"]["context"] == {"execution_id": execution_id}


def test_every_submit_response_carries_the_rate_limit_headers(peer: FlaskClient) -> None:
    for body, status in (({"name": "ok", "dag": {"nodes": [{"id": "a", "handler": "echo"}]}}, 201),
                         ({"name": "bad", "dag": {"nodes": []}}, 400), ({"dag": {}}, 422)):  # fmt: skip
        response = peer.post("/api/v1/workflow", json=body)
        assert response.status_code == status
        assert int(response.headers["X-RateLimit-Limit"]) > 0 and "X-RateLimit-Remaining" in response.headers


def test_keys_stay_required_unless_keyless_callers_are_admitted_and_then_only_on_the_peers_paths(
    settings: Settings, authorized: Callable[[Flask], FlaskClient]
) -> None:
    body = {"name": "x", "dag": {"nodes": [{"id": "a", "handler": "echo"}]}}
    closed = create_app(settings).test_client()
    refused = closed.post("/api/v1/workflow", json=body)
    assert refused.status_code == 401 and refused.json == {"detail": refused.json["detail"]}
    readers = create_app(replace(settings, peer_keyless_role="reader")).test_client()
    assert readers.post("/api/v1/workflow", json=body).status_code == 403  # a reader may not submit
    assert readers.get("/api/v1/workflows").status_code == 401  # Stepwise's own API still needs a key
    assert readers.get("/api/v1/admin/dlq").status_code == 403
    with pytest.raises(ValueError, match="superuser"):
        create_app(replace(settings, peer_keyless_role="superuser"))


def test_health_says_healthy_and_stays_liveness(peer: FlaskClient) -> None:
    response = peer.get("/health")
    assert response.status_code == 200 and response.json == {"status": "ok", "health": "healthy"}


def test_a_keyless_caller_sees_only_the_peers_own_runs(
    peer: FlaskClient, client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    # An execution made through Stepwise's own API, with a key: to a keyless caller, unknown.
    workflow = define([{"id": "a", "handler": "fail", "retry": {"max_attempts": 1}}])
    theirs = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json["id"]
    wait_for(lambda: client.get(f"/api/v1/executions/{theirs}").json["status"] == "FAILED", timeout=30)
    for method, path in (("get", f"/api/v1/workflow/{theirs}"), ("get", f"/api/v1/workflow/{theirs}/results"),
                         ("delete", f"/api/v1/workflow/{theirs}"), ("post", f"/api/v1/workflow/trigger/{theirs}"),
                         ("get", f"/workflows/{theirs}"), ("post", f"/workflow/trigger/{theirs}")):  # fmt: skip
        assert getattr(peer, method)(path).status_code == 404, path
    letters = client.get("/api/v1/admin/dead-letters", query_string={"execution_id": theirs}).json["items"]
    assert letters and theirs not in {e["execution_id"] for e in peer.get("/api/v1/admin/dlq").json["entries"]}
    assert peer.post(f"/api/v1/admin/dlq/{letters[0]['id']}/retry").status_code == 404
    assert peer.delete(f"/api/v1/admin/dlq/{letters[0]['id']}").status_code == 404
    assert client.get(f"/api/v1/executions/{theirs}").json["status"] == "FAILED"  # untouched


def test_postgresql_away_is_a_503_with_retry_after_in_peer_a_s_shape(settings: Settings) -> None:
    nobody = f"postgresql://postgres@127.0.0.1:{port_for.get_port(None)}/stepwise_test"
    peer = create_app(replace(settings, database_url=nobody, peer_keyless_role="admin")).test_client()
    for method, path in (("post", "/api/v1/workflow"), ("get", f"/api/v1/workflow/{uuid.uuid4()}"),
                         ("get", "/api/v1/admin/dlq")):  # fmt: skip
        body = {"name": "x", "dag": {"nodes": [{"id": "a", "handler": "echo"}]}} if method == "post" else None
        response = getattr(peer, method)(path, json=body)
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert response.json == {"detail": "PostgreSQL is unreachable; try again shortly"}
        assert int(response.headers["Retry-After"]) > 0


def test_an_unknown_path_or_method_under_peer_a_s_prefixes_answers_in_its_shape(peer: FlaskClient) -> None:
    assert peer.get("/api/v1/workflow/a/b/c").json == {"detail": "Not Found"}
    wrong = peer.put("/api/v1/workflow")
    assert (
        wrong.status_code == 405 and wrong.json == {"detail": "Method Not Allowed"} and "POST" in wrong.headers["Allow"]
    )
