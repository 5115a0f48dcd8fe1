"""The root peers' (peer-c's, peer-e's) submit-and-trigger API, their payloads, their
simulated handlers and dry runs, end to end. (peer-a's API: test_peer_a_api.py.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.runtime import Runtime
from app.services import api_keys
from tests.e2e.conftest import FINISHED, unique
from tests.support import WorkerPool, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PEER_EXAMPLES = sorted(path.stem for path in (EXAMPLES / "peer").glob("*.json"))
OUTBOUND = {"call_external_service", "http_request", "llm", "llm_service"}
# The nodes each example leaves SKIPPED (the branch not taken).
SKIPPED = {"conditional_order_flow": {"auto_approve"}}


def peer_payload(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / "peer" / f"{name}.json").read_text())


def peer_nodes(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return payload["dag"]["nodes"] if "dag" in payload else payload["nodes"]


@pytest.fixture
def submit(client: FlaskClient, workers: WorkerPool) -> Callable[..., str]:
    """POST a peer payload to /workflow; the execution id."""

    def _submit(payload: dict[str, Any]) -> str:
        response = client.post("/workflow", json=payload)
        assert response.status_code == 200, response.json
        assert response.json["message"] == "Workflow accepted" and response.json["status"] == "PENDING"
        return response.json["execution_id"]

    return _submit


@pytest.fixture
def settle(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """Poll the peers' status endpoint until the execution is finished."""

    def _settle(execution_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = client.get(f"/workflows/{execution_id}").json
            return body if body["status"] in FINISHED else None

        return wait_for(done, timeout=timeout)

    return _settle


def test_there_are_five_peer_examples_each_also_in_the_v1_format() -> None:
    assert PEER_EXAMPLES == [
        "concurrent_completion",
        "conditional_order_flow",
        "fan_out_fan_in",
        "linear_chain",
        "parallel_api_fetcher",
    ]
    for name in PEER_EXAMPLES:
        v1 = json.loads((EXAMPLES / f"{name}.json").read_text())
        assert v1["nodes"] == peer_nodes(peer_payload(name)), name


@pytest.mark.parametrize("name", PEER_EXAMPLES)
def test_each_peer_example_completes_through_the_peer_api(
    client: FlaskClient, submit: Callable[..., str], settle: Callable[..., dict[str, Any]], name: str
) -> None:
    payload = peer_payload(name)
    execution_id = submit(payload)
    assert client.get(f"/workflows/{execution_id}").json["status"] == "PENDING"  # waits for its trigger
    # A dry run, as `make demo` runs them: parallel_api_fetcher has a real http_request.
    triggered = client.post(f"/workflow/trigger/{execution_id}", query_string={"dry_run": "true"})
    assert triggered.status_code == 200
    assert triggered.json["message"] == "Workflow triggered" and triggered.json["execution_id"] == execution_id
    assert triggered.json["dry_run"] is True

    status = settle(execution_id)
    assert status["status"] == "COMPLETED", status
    skipped = SKIPPED.get(name, set())
    nodes = peer_nodes(payload)
    assert {n: s["status"] for n, s in status["nodes"].items()} == {
        node["id"]: "SKIPPED" if node["id"] in skipped else "COMPLETED" for node in nodes
    }
    assert status["progress"]["percent"] == 100.0

    results = client.get(f"/workflows/{execution_id}/results").json
    assert results["execution_id"] == execution_id
    assert set(results["results"]) == {node["id"] for node in nodes} - skipped
    for node in nodes:
        if node["id"] in skipped:
            continue
        output = results["results"][node["id"]]
        if node["handler"] == "http_request":
            assert output["dry_run"] is True  # nothing was called
        elif node["handler"] in OUTBOUND:
            assert output["status"] == "ok"  # the peers' simulation, dry run or not


@pytest.mark.parametrize("name", PEER_EXAMPLES)
def test_each_example_completes_through_api_v1(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
    name: str,
) -> None:
    example = json.loads((EXAMPLES / f"{name}.json").read_text())
    workflow = define(example["nodes"], name=unique(name.replace("_", "-")), description=example["description"])
    execution = trigger(workflow["id"], dry_run=True)
    assert execution["dry_run"] is True
    detail = finish(execution["id"])
    assert detail["status"] == "COMPLETED", detail
    skipped = SKIPPED.get(name, set())
    assert {n["node_id"] for n in detail["nodes"] if n["status"] == "SKIPPED"} == skipped


# peer-c's sample DAGs, as its README gives them (its integration tests judge these outputs).
PEER_C_DAGS = {
    "linear": [
        {"id": "A", "handler": "call_external_service", "dependencies": [], "config": {"url": "http://service-a"}},
        {"id": "B", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "Summarize {{ A.data }}"}},
        {"id": "C", "handler": "call_external_service", "dependencies": ["B"],
         "config": {"url": "http://consumer/{{ B.answer }}"}},
    ],
    "fanout": [
        {"id": "A", "handler": "call_external_service", "dependencies": [], "config": {"url": "http://root"}},
        {"id": "B", "handler": "call_external_service", "dependencies": ["A"],
         "config": {"url": "http://branch-b/{{ A.data }}"}},
        {"id": "C", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "Branch C on {{ A.data }}"}},
        {"id": "D", "handler": "noop", "dependencies": ["B", "C"], "config": {}},
    ],
    "race": [
        {"id": "B", "handler": "noop", "dependencies": []},
        {"id": "C", "handler": "call_external_service", "dependencies": [], "config": {"url": "http://service-c"}},
        {"id": "D", "handler": "llm", "dependencies": ["B", "C"],
         "config": {"prompt": "{{ B.status }} and {{ C.data }}"}},
    ],
}  # fmt: skip

# peer-e's README examples, triggered as its README does (no dry_run): they call
# api.example.com, which does not resolve; as in peer-e, nothing is called.
PEER_E_DAGS = {
    "readme": [
        {"id": "fetch_data", "handler": "call_external_service",
         "config": {"url": "https://api.example.com/users/123", "method": "GET"}, "dependencies": []},
        {"id": "analyze_with_llm", "handler": "llm_service",
         "config": {"model": "gpt-4", "prompt": "Analyze this user data: {{ fetch_data.result }}"},
         "dependencies": ["fetch_data"]},
    ],
    "summary": [
        {"id": "fetch_user", "handler": "call_external_service", "config": {"url": "https://api.example.com/users/7"}},
        {"id": "generate_summary", "handler": "llm_service", "dependencies": ["fetch_user"],
         "config": {"model": "gpt-4", "prompt": "Summarize the following data: {{ fetch_user.data }}"}},
    ],
    "timeouts": [
        {"id": "llm_analysis", "handler": "llm_service", "timeout_seconds": 600,
         "config": {"model": "gpt-4", "prompt": "Analyze this large dataset..."}},
    ],
    "fan_out_fan_in": [
        {"id": "start", "handler": "compute", "config": {"operation": "add", "a": 1, "b": 2}},
        {"id": "users", "handler": "call_external_service", "dependencies": ["start"],
         "config": {"url": "https://api.example.com/users", "method": "POST", "body": {"n": "{{ start.result }}"}}},
        {"id": "shout", "handler": "transform", "dependencies": ["start"],
         "config": {"input": "done", "transform_type": "uppercase"}},
        {"id": "merge", "handler": "aggregate", "dependencies": ["users", "shout"],
         "config": {"inputs": ["{{ users.result.message }}", "{{ shout.result }}"], "aggregate_type": "list"}},
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", PEER_C_DAGS)
def test_peer_c_s_sample_dags_complete_with_its_outputs(
    client: FlaskClient, submit: Callable[..., str], settle: Callable[..., dict[str, Any]], name: str
) -> None:
    execution_id = submit({"name": name, "dag": {"nodes": PEER_C_DAGS[name]}})
    assert client.post(f"/workflow/trigger/{execution_id}").json["triggered"] is True
    again = client.post(f"/workflow/trigger/{execution_id}").json  # peer-c's race guard triggers twice
    assert again["triggered"] is False and again["status"] in ("RUNNING", "COMPLETED")
    assert settle(execution_id)["status"] == "COMPLETED"
    results = client.get(f"/workflows/{execution_id}/results").json["results"]
    if name == "linear":
        assert results["A"]["status"] == "ok" and results["A"]["data"] == "Simulated call to http://service-a"
        assert results["B"] == {
            **results["B"],
            "status": "ok",
            "answer": "Simulated response for: Summarize Simulated call to http://service-a",
        }
        assert results["C"]["data"] == f"Simulated call to http://consumer/{results['B']['answer']}"
    elif name == "fanout":
        assert results["B"]["data"] == "Simulated call to http://branch-b/Simulated call to http://root"
        assert results["D"] == {"status": "ok"}
    else:
        assert results["D"]["answer"] == "Simulated response for: ok and Simulated call to http://service-c"
    assert results["A" if name != "race" else "C"]["result"]["message"] == "Mock external service response"


@pytest.mark.parametrize("name", PEER_E_DAGS)
def test_peer_e_s_examples_complete_as_its_readme_triggers_them(
    client: FlaskClient, submit: Callable[..., str], settle: Callable[..., dict[str, Any]], name: str
) -> None:
    execution_id = submit({"name": name, "nodes": PEER_E_DAGS[name]})
    assert client.post(f"/workflow/trigger/{execution_id}").json["dry_run"] is False
    assert settle(execution_id)["status"] == "COMPLETED"
    results = client.get(f"/workflows/{execution_id}/results").json["results"]
    for node in PEER_E_DAGS[name]:
        output = results[node["id"]]
        if node["handler"] == "call_external_service":
            assert output["result"]["url"] == node["config"]["url"] and output["result"]["id"] == node["id"]
        elif node["handler"] == "llm_service":
            assert output["result"].startswith("Mock LLM response for prompt: ") and output["model"] == "gpt-4"


def test_http_request_stays_a_real_call(
    client: FlaskClient, submit: Callable[..., str], settle: Callable[..., dict[str, Any]], fake_services: Any
) -> None:
    payload = {"name": unique(), "nodes": [{"id": "A", "handler": "http_request",
                                            "config": {"url": fake_services.url("/json")}}]}  # fmt: skip
    execution_id = submit(payload)
    triggered = client.post(f"/workflow/trigger/{execution_id}").json
    assert triggered["dry_run"] is False
    assert settle(execution_id)["status"] == "COMPLETED"
    output = client.get(f"/workflows/{execution_id}/results").json["results"]["A"]
    assert output["status_code"] == 200 and output["body"] == {"user": {"id": 7, "name": "ada"}}


@pytest.mark.parametrize(
    "nodes,code",
    [
        ([{"id": "a", "handler": "noop", "dependencies": ["b"]}, {"id": "b", "handler": "noop", "dependencies": ["a"]}],
         "cycle"),
        ([{"id": "a", "handler": "no_such_handler"}], "unknown_handler"),
        ([{"id": "a", "handler": "noop", "dependencies": ["ghost"]}], "unknown_dependency"),
    ],
    ids=["cycle", "unknown handler", "unknown dependency"],
)  # fmt: skip
def test_an_invalid_dag_is_a_400_with_the_reasons(client: FlaskClient, nodes: list[Any], code: str) -> None:
    name = unique()
    for body in ({"name": name, "dag": {"nodes": nodes}}, {"name": name, "nodes": nodes}):
        response = client.post("/workflow", json=body)
        assert response.status_code == 400
        assert response.json["status"] == 400 and response.json["type"] == "/problems/invalid_dag"
        assert code in {problem["code"] for problem in response.json["errors"]}
        # peer-c's clients read `detail` (its cycle test looks for the word)
        assert response.json["detail"].startswith(f"workflow {name!r} is not valid: ")
        assert code != "cycle" or "cycle" in response.json["detail"]
    assert client.get("/api/v1/workflows", query_string={"name": name}).json["items"] == []  # nothing stored


def test_a_malformed_body_is_a_400_too(client: FlaskClient) -> None:
    no_nodes = client.post("/workflow", json={"name": "x"})
    both = client.post("/workflow", json={"name": "x", "nodes": [], "dag": {"nodes": []}})
    bad_node = client.post("/workflow", json={"name": "x", "nodes": [{"handler": "noop"}]})
    long_deadline = client.post(
        "/workflow", json={"name": "x", "nodes": [{"id": "a", "handler": "noop"}], "timeout_seconds": 2**40}
    )
    for response in (no_nodes, both, bad_node, long_deadline):
        assert response.status_code == 400 and response.json["errors"], response.json
    assert client.post("/workflow", data="{", content_type="application/json").status_code == 400


def test_unknown_executions_are_404(client: FlaskClient) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("post", f"/workflow/trigger/{missing}"),
        ("get", f"/workflows/{missing}"),
        ("get", f"/workflows/{missing}/results"),
        ("delete", f"/workflows/{missing}"),
        ("post", "/workflow/trigger/not-a-uuid"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 404, path
        assert response.json["status"] == 404 and response.json["detail"]


def test_triggering_twice_changes_nothing_and_says_so(
    client: FlaskClient, submit: Callable[..., str], settle: Callable[..., dict[str, Any]]
) -> None:
    execution_id = submit({"name": unique(), "nodes": [{"id": "a", "handler": "count"}]})
    first = client.post(f"/workflow/trigger/{execution_id}").json
    second = client.post(f"/workflow/trigger/{execution_id}").json
    assert first["triggered"] is True
    assert second["triggered"] is False and second["message"].startswith("Workflow is already")
    assert settle(execution_id)["status"] == "COMPLETED"
    again = client.post(f"/workflow/trigger/{execution_id}").json
    assert again["triggered"] is False and again["status"] == "COMPLETED"
    assert again["message"] == "Workflow is already COMPLETED; nothing changed"
    logs = client.get(f"/api/v1/executions/{execution_id}/logs", query_string={"node_id": "a"}).json["items"]
    assert [row["event"] for row in logs].count("node.running") == 1


def test_triggering_a_failed_execution_reruns_only_its_failed_nodes(
    client: FlaskClient,
    runtime: Runtime,
    app: Flask,
    submit: Callable[..., str],
    settle: Callable[..., dict[str, Any]],
) -> None:
    nodes = [
        {"id": "first", "handler": "count"},
        {"id": "shaky", "handler": "flaky", "dependencies": ["first"], "config": {"fail_times": 1},
         "retry": {"max_attempts": 1}},
        {"id": "last", "handler": "noop", "dependencies": ["shaky"]},
    ]  # fmt: skip
    execution_id = submit({"name": unique(), "nodes": nodes})
    client.post(f"/workflow/trigger/{execution_id}")
    failed = settle(execution_id)
    assert failed["status"] == "FAILED"
    assert failed["nodes"]["last"]["status"] == "UPSTREAM_FAILED"

    with runtime.sessions() as session:
        _, writer_key = api_keys.create_key(session, unique("writer"), "writer")
    writer = app.test_client()
    refused = writer.post(f"/workflow/trigger/{execution_id}", headers={"Authorization": f"Bearer {writer_key}"})
    assert refused.status_code == 403 and refused.json["details"]["current_status"] == "FAILED"

    as_dry_run = client.post(f"/workflow/trigger/{execution_id}", query_string={"dry_run": "true"})
    assert as_dry_run.status_code == 409  # a rerun keeps the mode of the first run
    rerun = client.post(f"/workflow/trigger/{execution_id}").json
    assert rerun["triggered"] is True and rerun["message"] == "Workflow triggered: its failed nodes run again"
    done = settle(execution_id)
    assert done["status"] == "COMPLETED"
    assert {n: s["attempt"] for n, s in done["nodes"].items()} == {"first": 1, "shaky": 2, "last": 1}
    logs = client.get(f"/api/v1/executions/{execution_id}/logs", query_string={"node_id": "first"}).json["items"]
    assert [row["event"] for row in logs].count("node.running") == 1  # the completed node kept its output


def test_delete_cancels_a_running_execution(
    client: FlaskClient,
    submit: Callable[..., str],
    wait_node: Callable[..., dict[str, Any]],
) -> None:
    execution_id = submit({"name": unique(), "nodes": [{"id": "long", "handler": "sleep", "config": {"seconds": 20}}]})
    client.post(f"/workflow/trigger/{execution_id}")
    wait_node(execution_id, "long", "RUNNING")
    response = client.delete(f"/workflows/{execution_id}")
    assert response.status_code == 200
    assert response.json == {"execution_id": execution_id, "status": "CANCELLED", "message": "Workflow cancelled"}
    assert client.get(f"/workflows/{execution_id}").json["nodes"]["long"]["status"] == "CANCELLED"
    again = client.delete(f"/workflows/{execution_id}")
    assert again.status_code == 409 and again.json["details"]["current_status"] == "CANCELLED"


def test_an_ad_hoc_submit_never_becomes_the_version_a_trigger_by_name_runs(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    submit: Callable[..., str],
    finish: Callable[..., dict[str, Any]],
) -> None:
    name = unique()
    defined = define([{"id": "real", "handler": "noop"}], name=name)
    submit({"name": name, "nodes": [{"id": "adhoc", "handler": "noop"}]})  # version 2, ad hoc
    versions = client.get("/api/v1/workflows", query_string={"name": name}).json["items"]
    assert {(w["version"], w["adhoc"]) for w in versions} == {(1, False), (2, True)}
    response = client.post("/api/v1/executions", json={"workflow_name": name})
    assert response.status_code == 201 and response.json["workflow_id"] == defined["id"]
    assert [n["node_id"] for n in finish(response.json["id"])["nodes"]] == ["real"]
    only_adhoc = unique()
    submit({"name": only_adhoc, "nodes": [{"id": "a", "handler": "noop"}]})
    assert client.post("/api/v1/executions", json={"workflow_name": only_adhoc}).status_code == 404


def test_a_trigger_without_dry_run_keeps_the_mode_the_execution_was_made_with(
    client: FlaskClient, define: Callable[..., dict[str, Any]], finish: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "call_external_service", "config": {"url": "http://service-a"}}])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"workflow_id": workflow["id"], "dry_run": True, "scheduled_at": later}
    made = client.post("/api/v1/executions", json=body)
    assert made.status_code == 201 and made.json["status"] == "PENDING"
    triggered = client.post(f"/workflow/trigger/{made.json['id']}").json  # start it now
    assert triggered["triggered"] is True and triggered["dry_run"] is True
    assert finish(made.json["id"])["status"] == "COMPLETED"  # http://service-a was never called


def test_dry_run_is_part_of_the_idempotent_request(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    body = {"workflow_id": workflow["id"], "idempotency_key": unique("key")}
    first = client.post("/api/v1/executions", json={**body, "dry_run": True})
    assert first.status_code == 201 and first.json["dry_run"] is True
    assert client.post("/api/v1/executions", json={**body, "dry_run": True}).status_code == 200
    assert client.post("/api/v1/executions", json=body).status_code == 422


def test_through_api_v1_templates_and_guards_read_outputs_by_the_peers_names_in_a_dry_run(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    nodes = [*peer_nodes(peer_payload("linear_chain"))]
    nodes.append(
        {"id": "D", "handler": "noop", "dependencies": ["A"], "when": "A.data.dry_run"}
    )  # an alias, in a guard
    execution = trigger(define(nodes)["id"], dry_run=True)
    assert finish(execution["id"])["status"] == "COMPLETED"
    results = client.get(f"/api/v1/executions/{execution['id']}/results").json["results"]
    # B's prompt got A's response body through `{{ A.data }}` (an alias of `body`, not stored twice)
    assert results["B"]["prompt"].startswith("Summarize {") and '"url": "http://service-a"' in results["B"]["prompt"]
    assert "data" not in results["A"]
    assert results["C"]["url"] == "http://consumer/dry-run-answer-gpt-4o-mini"  # from `{{ B.answer }}`
    assert "D" in results  # its guard held, not SKIPPED
    logs = client.get(f"/api/v1/executions/{execution['id']}/logs", query_string={"limit": 1000}).json["items"]
    marked = {row["node_id"] for row in logs if (row.get("details") or {}).get("dry_run") is True}
    assert marked >= {"A", "B", "C"}  # every outbound node says, in the log, that it did not call out
    assert any(row["message"] == "execution started (dry run)" for row in logs)
