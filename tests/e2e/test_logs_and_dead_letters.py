"""The audit log reads back every step; dead letters can be listed, retried and deleted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient


def test_logs_filter_by_level_and_node_and_page_with_a_cursor(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {"id": "hello", "handler": "log", "config": {"message": "hello {who}", "level": "warning"}},
            {
                "id": "calc",
                "handler": "compute",
                "dependencies": ["hello"],
                "config": {"operation": "add", "a": 1, "b": 2},
            },
        ]
    )
    detail = run(workflow["id"], {"who": "ops"})
    url = f"/api/v1/executions/{detail['id']}/logs"
    everything = client.get(url, query_string={"limit": 1000}).json
    assert everything["next_cursor"] is None
    rows = everything["items"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert ("handler.log", "hello ops", "warning") in {(r["event"], r["message"], r["level"]) for r in rows}
    warnings = client.get(url, query_string={"level": "warning"}).json["items"]
    assert warnings and all(r["level"] in ("warning", "error") for r in warnings)
    calc = client.get(url, query_string={"node_id": "calc"}).json["items"]
    assert [r["event"] for r in calc] == ["node.queued", "node.running", "node.completed"]
    paged, cursor = [], None
    while True:
        page = client.get(url, query_string={"limit": 3, **({"cursor": cursor} if cursor else {})}).json
        paged.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [r["id"] for r in paged] == [r["id"] for r in rows]
    since = rows[3]["created_at"]
    later = client.get(url, query_string={"since": since, "limit": 1000}).json["items"]
    assert all(datetime.fromisoformat(r["created_at"]) >= datetime.fromisoformat(since) for r in later)
    assert rows[3]["id"] in {r["id"] for r in later}
    assert client.get(url, query_string={"cursor": "abc"}).status_code == 422
    assert client.get(url, query_string={"level": "loud"}).status_code == 422
    assert client.get("/api/v1/executions/00000000-0000-0000-0000-000000000000/logs").status_code == 404


def test_a_dead_letter_can_be_retried_and_its_execution_resumes(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(
        [
            {"id": "ok", "handler": "noop"},
            {"id": "flaky", "handler": "flaky", "config": {"fail_times": 1}, "max_retries": 0},
            {"id": "after", "handler": "noop", "dependencies": ["flaky", "ok"]},
        ]
    )
    detail = run(workflow["id"])
    assert detail["status"] == "FAILED"
    listed = client.get(
        "/api/v1/admin/dead-letters", query_string={"workflow_id": workflow["id"], "category": "http_5xx"}
    ).json
    assert len(listed["items"]) == 1
    letter = listed["items"][0]
    assert client.get(f"/api/v1/admin/dead-letters/{letter['id']}").json["node_id"] == "flaky"
    response = client.post(f"/api/v1/admin/dead-letters/{letter['id']}/retry")
    assert response.status_code == 200
    resumed = finish(detail["id"])
    assert resumed["status"] == "COMPLETED"
    assert {n["node_id"]: (n["status"], n["attempt"]) for n in resumed["nodes"]} == {
        "ok": ("COMPLETED", 1),
        "flaky": ("COMPLETED", 2),
        "after": ("COMPLETED", 1),
    }
    # retried letters are gone; retrying again is a 404
    assert client.get(f"/api/v1/admin/dead-letters/{letter['id']}").status_code == 404
    assert client.post(f"/api/v1/admin/dead-letters/{letter['id']}/retry").status_code == 404


def test_a_dead_letter_can_be_deleted_and_the_list_paginates(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": f"f{i}", "handler": "fail", "config": {"category": "validation"}} for i in range(3)])
    detail = run(workflow["id"])
    query = {"execution_id": detail["id"]}
    page = client.get("/api/v1/admin/dead-letters", query_string={**query, "limit": 2, "count": "true"}).json
    assert (page["total"], len(page["items"])) == (3, 2) and page["next_cursor"]
    rest = client.get("/api/v1/admin/dead-letters", query_string={**query, "cursor": page["next_cursor"]}).json
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None and "total" not in rest
    assert {d["node_id"] for d in page["items"] + rest["items"]} == {"f0", "f1", "f2"}
    doomed = page["items"][0]["id"]
    assert client.delete(f"/api/v1/admin/dead-letters/{doomed}").status_code == 204
    assert client.delete(f"/api/v1/admin/dead-letters/{doomed}").status_code == 404
    assert client.get("/api/v1/admin/dead-letters", query_string={**query, "count": "true"}).json["total"] == 2
    # the node itself stays FAILED
    node = next(n for n in client.get(f"/api/v1/executions/{detail['id']}").json["nodes"] if n["status"] == "FAILED")
    assert node["error"]["category"] == "validation"


def test_a_dead_letter_of_a_cancelled_execution_cannot_be_retried(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    wait_node: Callable[..., dict[str, Any]],
) -> None:
    workflow = define([{"id": "bad", "handler": "fail"}, {"id": "slow", "handler": "sleep", "config": {"seconds": 20}}])
    execution = trigger(workflow["id"])
    wait_node(execution["id"], "bad", "FAILED")
    wait_node(execution["id"], "slow", "RUNNING")
    client.post(f"/api/v1/executions/{execution['id']}/cancel")
    letter = client.get("/api/v1/admin/dead-letters", query_string={"execution_id": execution["id"]}).json["items"][0]
    response = client.post(f"/api/v1/admin/dead-letters/{letter['id']}/retry")
    assert response.status_code == 409 and response.json["details"]["current_status"] == "CANCELLED"
