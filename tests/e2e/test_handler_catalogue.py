"""Each handler's config is checked when a workflow is defined; the catalogue is discoverable
and extensible through the `stepwise.handlers` entry points."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from app.handlers import load_extensions, registry
from tests.e2e.conftest import unique
from tests.support import WorkerPool

BAD_CONFIGS = [
    ("http_request", {"method": "GET"}, "config.url"),
    ("http_request", {"url": "ftp://example.com/file"}, "config.url"),
    ("call_external_service", {"url": "https://example.com", "method": "FETCH"}, "config.method"),
    ("http_request", {"url": "https://example.com", "json": {"a": 1}, "text": "b"}, "config.text"),
    ("llm_service", {"model": "m"}, "config.prompt"),
    ("llm", {"prompt": "hi", "temperature": 9}, "config.temperature"),
    ("data_transform", {"transforms": [{"type": "query", "expression": "a[?"}]}, "config.transforms.0.expression"),
    ("data_transform", {"transforms": [{"type": "rename", "from": "a"}]}, "config.transforms.0.to"),
    ("transform", {"input": "x", "transform_type": "shout"}, "config.transform_type"),
    ("compute", {"operation": "add", "a": 1}, "config.b"),
    ("aggregate", {"inputs": [1], "aggregate_type": "median"}, "config.aggregate_type"),
    ("delay", {"seconds": -1}, "config.seconds"),
    ("conditional", {"condition": {"field": "x", "operator": "like"}}, "config.condition.operator"),
    ("log", {"level": "info"}, "config.message"),
    ("unreliable", {"failure_rate": 2}, "config.failure_rate"),
    ("fail", {"retry_after": -1}, "config.retry_after"),
]


@pytest.mark.parametrize("handler,config,field", BAD_CONFIGS, ids=[f"{h}:{f}" for h, _, f in BAD_CONFIGS])
def test_a_bad_config_is_a_422_naming_the_node_and_field(
    client: FlaskClient, handler: str, config: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/api/v1/workflows", json={"name": unique(), "nodes": [{"id": "n1", "handler": handler, "config": config}]}
    )
    assert response.status_code == 422
    found = {(p["node_id"], p["field"], p["code"]) for p in response.json["errors"]}
    assert ("n1", field, "invalid_config") in found


def test_the_catalogue_lists_every_handler_with_its_config_schema(client: FlaskClient) -> None:
    listed = {h["name"]: h for h in client.get("/api/v1/handlers").json}
    expected = {
        "http_request", "llm_service", "data_transform", "transform", "compute", "aggregate",
        "delay", "log", "noop", "fail", "unreliable", "conditional",
    }  # fmt: skip
    assert expected <= set(listed)
    http = listed["http_request"]
    assert http["aliases"] == ["call_external_service"]
    assert http["config_schema"]["properties"]["url"]["type"] == "string"
    assert "url" in http["config_schema"]["required"]
    assert http["retry"]["max_attempts"] == 3
    assert listed["noop"]["config_schema"]["additionalProperties"] is True
    one = client.get("/api/v1/handlers/llm")  # by alias
    assert one.status_code == 200 and one.json["name"] == "llm_service"
    assert client.get("/api/v1/handlers/nope").status_code == 404


def test_a_package_adds_a_handler_through_an_entry_point(tmp_path: Path, settings: Settings, authorized: Any) -> None:
    name = f"shout_{uuid.uuid4().hex[:6]}"
    module = f"stepwise_plugin_{name}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            import marshmallow as ma
            from app.handlers import handler

            class Config(ma.Schema):
                text = ma.fields.String(required=True)

            @handler("{name}", schema=Config)
            def shout(config, ctx):
                return {{"text": config["text"].upper() + "!"}}
            """
        )
    )
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[stepwise.handlers]\n{name} = {module}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        load_extensions()
        assert name in registry.names()
        client = authorized(create_app(settings))
        assert client.get(f"/api/v1/handlers/{name}").json["config_schema"]["required"] == ["text"]
        bad = client.post("/api/v1/workflows", json={"name": unique(), "nodes": [{"id": "a", "handler": name}]})
        assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "config.text"
    finally:
        sys.path.remove(str(tmp_path))


def test_llm_without_an_endpoint_fails_for_good_saying_what_to_set(
    authorized: Any, settings: Settings, workers: WorkerPool, finish: Callable[..., dict[str, Any]]
) -> None:
    queue = f"no-llm-{uuid.uuid4().hex[:8]}"
    client = authorized(create_app(replace(settings, queue_name=queue, llm_base_url="")))
    (worker,) = workers.start(1, QUEUE_NAME=queue, LLM_BASE_URL="")
    response = client.post(
        "/api/v1/workflows",
        json={
            "name": unique(),
            "activate": True,
            "nodes": [{"id": "ask", "handler": "llm_service", "config": {"prompt": "hi"}}],
        },
    )
    assert response.status_code == 201  # defining it is allowed
    execution = client.post("/api/v1/executions", json={"workflow_id": response.json["id"]}).json
    detail = finish(execution["id"])
    (node,) = detail["nodes"]
    assert (node["status"], node["attempt"]) == ("FAILED", 1)
    assert "LLM_BASE_URL" in node["error"]["message"] and node["error"]["category"] == "configuration"
    worker.terminate()
