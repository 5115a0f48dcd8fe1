"""Request and response schemas for /api/v1. Services never see these."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from app.domain.dag import NodeSpec
from app.domain.states import ExecutionStatus, NodeStatus, WorkflowStatus
from app.domain.trigger_rules import TriggerRule


class Instant(fields.AwareDateTime):
    """An ISO 8601 time with an offset, read as the instant it names, in UTC. Any offset
    RFC 3339 allows (up to +-23:59) is taken: PostgreSQL, which accepts only +-15:59 in
    a literal, only ever sees UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.astimezone(UTC)
        except OverflowError as err:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ma.ValidationError("is out of range") from err


class RetryInSchema(ma.Schema):
    max_attempts = fields.Integer(
        strict=True, metadata={"description": "Attempts in all, the first included (1: no retry)"}
    )
    backoff_seconds = fields.Float(metadata={"description": "Backoff base: up to base * 2^(n-1) before retry n"})
    max_backoff_seconds = fields.Float(metadata={"description": "Cap on one backoff"})


class NodeInSchema(ma.Schema):
    """A DAG node. Accepts peer-d's step fields too: `name` for `id`, `task_type` for
    `handler`, `max_retries` (retries after the first attempt) for `retry.max_attempts`."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    handler = fields.String(required=True, validate=validate.Length(min=1, max=100))
    dependencies = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=list)
    config = fields.Dict(keys=fields.String(), load_default=dict)
    timeout_seconds = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=-(2**31), max=2**31 - 1)
    )
    step_order = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=0, max=1_000_000),
        metadata={"description": "With no dependencies, depend on every node of the previous order"},
    )
    retry = fields.Nested(RetryInSchema, allow_none=True, load_default=None)
    max_retries = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=0, max=99)
    )
    # Checked with the DAG (not here), so an unknown rule is listed with the other problems.
    trigger_rule = fields.String(
        load_default="all_success",
        validate=validate.Length(min=1, max=40),
        metadata={
            "description": "When it runs, given how its parents ended (Airflow's rules)",
            "enum": [r.value for r in TriggerRule],
        },
    )
    when = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "A guard, e.g. `check.result == true`; false means SKIPPED"},
    )
    branch = fields.Boolean(
        allow_none=True, load_default=None, metadata={"description": "Run on this result of its conditional parent"}
    )

    @ma.pre_load
    def accept_aliases(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in (("name", "id"), ("task_type", "handler")):
                if alias in data and name not in data:
                    data[name] = data.pop(alias)
        return data

    @ma.post_load
    def to_spec(self, data: dict[str, Any], **_: Any) -> NodeSpec:
        """The node as the domain's NodeSpec."""
        retry = dict(data["retry"] or {})
        if data["max_retries"] is not None and "max_attempts" not in retry:
            retry["max_attempts"] = data["max_retries"] + 1
        return NodeSpec(
            node_id=data["id"],
            handler=data["handler"],
            dependencies=tuple(data["dependencies"]),
            config=data["config"],
            timeout_seconds=data["timeout_seconds"],
            step_order=data["step_order"],
            retry=retry or None,
            trigger_rule=data["trigger_rule"],
            when=data["when"],
            branch=data["branch"],
        )


def _trimmed(data: Any, key: str) -> Any:
    """The body with white space around its `key` string dropped: a name of only spaces
    becomes "", which the field's Length(min=1) refuses, naming the field."""
    if isinstance(data, Mapping) and isinstance(data.get(key), str):
        return {**data, key: data[key].strip()}
    return data


class WorkflowBodySchema(ma.Schema):
    """What every way of defining a workflow shares (this API's and the peers' POST /workflow).
    Each declares its own `name`; it is trimmed here, for both."""

    description = fields.String(load_default="", validate=validate.Length(max=10_000))
    timeout_seconds = fields.Float(
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=0, max=30 * 86400, min_inclusive=False),
        metadata={
            "description": "Each execution's deadline from its start, in seconds (fractions allowed); past it "
            "the execution fails, and a result that comes after it does not count"
        },
    )

    @ma.pre_load
    def trim_name(self, data: Any, **_: Any) -> Any:
        return _trimmed(data, "name")


class WorkflowInSchema(WorkflowBodySchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    nodes = fields.List(fields.Nested(NodeInSchema), load_default=list)
    activate = fields.Boolean(
        load_default=False, metadata={"description": "Validate and activate at once instead of leaving a draft"}
    )
    fail_fast = fields.Boolean(
        load_default=False,
        metadata={
            "description": "A node failing for good fails the execution at once: its unfinished nodes are "
            "cancelled instead of independent branches finishing (Airflow's fail_fast)"
        },
    )


class WorkflowNodeSchema(ma.Schema):
    id = fields.String(attribute="node_id")
    handler = fields.String()
    dependencies = fields.List(fields.String())
    config = fields.Dict()
    timeout_seconds = fields.Integer(allow_none=True)
    retry = fields.Dict(attribute="retry_policy", allow_none=True)
    trigger_rule = fields.String()
    when = fields.String(attribute="when_expression", allow_none=True)
    branch = fields.Boolean(allow_none=True)
    condition = fields.String(allow_none=True, metadata={"description": "A guard in peer-a's grammar"})
    position = fields.Integer()
    step_order = fields.Integer(allow_none=True)


class StoredNodes(fields.List[dict[str, Any]]):
    """A workflow's nodes, documented as a list of WorkflowNodeSchema and dumped by reading
    the stored values straight into its keys: they are JSON already, and a workflow may have
    ten thousand nodes (marshmallow spent a tenth of a second per such response on them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Nested(WorkflowNodeSchema), **kwargs)
        schema = WorkflowNodeSchema()
        self._keys = [(name, field.attribute or name) for name, field in schema.dump_fields.items()]

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list[dict[str, Any]] | None:
        if value is None:
            return None
        keys = self._keys
        return [{name: getattr(node, attribute) for name, attribute in keys} for node in value]


class WorkflowSchema(ma.Schema):
    id = fields.UUID(attribute="workflow.id")
    name = fields.String(attribute="workflow.name")
    version = fields.Integer(attribute="workflow.version")
    status = fields.String(attribute="workflow.status", metadata={"enum": [s.value for s in WorkflowStatus]})
    description = fields.String(attribute="workflow.description")
    metadata = fields.Dict(attribute="workflow.meta")
    timeout_seconds = fields.Float(attribute="workflow.timeout_seconds", allow_none=True)
    fail_fast = fields.Boolean(attribute="workflow.fail_fast")
    adhoc = fields.Boolean(
        attribute="workflow.adhoc", metadata={"description": "Submitted with its run through POST /workflow"}
    )
    created_at = fields.DateTime(attribute="workflow.created_at")
    updated_at = fields.DateTime(attribute="workflow.updated_at")
    activated_at = fields.DateTime(attribute="workflow.activated_at", allow_none=True)
    nodes = StoredNodes()


class WorkflowSummarySchema(ma.Schema):
    id = fields.UUID()
    name = fields.String()
    version = fields.Integer()
    status = fields.String(metadata={"enum": [s.value for s in WorkflowStatus]})
    description = fields.String()
    metadata = fields.Dict(attribute="meta")
    timeout_seconds = fields.Float(allow_none=True)
    fail_fast = fields.Boolean()
    adhoc = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    activated_at = fields.DateTime(allow_none=True)


# The headers of a 201: where the new resource is (RFC 9110).
LOCATION = {"Location": {"description": "The new resource's path", "schema": {"type": "string"}, "required": True}}


class Cursor(fields.String):
    """Where a page of a list starts: the opaque `next_cursor` of the page before (a row's
    creation time and id, newest first)."""

    # A string on the wire, a key once loaded: marshmallow types String as loading a str.
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[datetime, uuid.UUID]:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            when, _, row_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition("|")
            key = (datetime.fromisoformat(when), uuid.UUID(row_id))
        except (ValueError, UnicodeDecodeError) as err:
            raise ma.ValidationError("not a cursor from this endpoint") from err
        if key[0].tzinfo is None:
            raise ma.ValidationError("not a cursor from this endpoint")
        return key

    @staticmethod
    def of(key: tuple[datetime, uuid.UUID] | None) -> str | None:
        """The cursor that starts the page after the row with this key."""
        if key is None:
            return None
        return base64.urlsafe_b64encode(f"{key[0].isoformat()}|{key[1]}".encode()).decode().rstrip("=")


class PageArgsSchema(ma.Schema):
    """What every list takes: a page size, where it starts, and whether to count."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = Cursor(metadata={"description": "next_cursor of the previous page; none for the first"})
    count = fields.Boolean(
        load_default=False, metadata={"description": "Also count every match (`total`): a COUNT grows with the table"}
    )
    created_after = Instant(metadata={"description": "Created at or after this time"})
    created_before = Instant(metadata={"description": "Created before this time"})


def page_query(args: dict[str, Any], **filters: Any) -> dict[str, Any]:
    """A list's query arguments as a repository's page() takes them."""
    return {
        "after": args.get("cursor"),
        "limit": args["limit"],
        "count": args["count"],
        "created_after": args.get("created_after"),
        "created_before": args.get("created_before"),
        **filters,
    }


def page_of(page: Any) -> dict[str, Any]:
    """A page as a list answers it: items, next_cursor, and total when counted."""
    answer = {"items": page.items, "next_cursor": Cursor.of(page.next_key)}
    if page.total is not None:
        answer["total"] = page.total
    return answer


class PageSchema(ma.Schema):
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "Pass as `cursor` for the next page; null on the last"}
    )
    total = fields.Integer(metadata={"description": "Every match, with count=true only"})


_STATUS_LIST = "Only these states (repeat the parameter for several)"


class WorkflowListArgsSchema(PageArgsSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in WorkflowStatus])),
        load_default=list,
        metadata={"description": _STATUS_LIST},
    )
    name = fields.String(validate=validate.Length(min=1, max=200))


class WorkflowPageSchema(PageSchema):
    items = fields.List(fields.Nested(WorkflowSummarySchema))


# Keys travel in an HTTP header too, where only visible ASCII is unambiguous.
KEY_CHARS = validate.Regexp(r"^[\x20-\x7e]{1,255}$", error="use 1 to 255 visible ASCII characters")


class TriggerSchema(ma.Schema):
    workflow_id = fields.UUID(metadata={"description": "The workflow version to run"})
    workflow_name = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "Or: run the latest active version"}
    )
    input_data = fields.Dict(keys=fields.String(), load_default=dict)
    node_params = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.Dict(keys=fields.String()),
        load_default=dict,
        metadata={
            "description": "Config overrides for this execution only, by node id: merged over those nodes' "
            "configs (top-level keys) and checked as a definition is; part of the idempotent body"
        },
    )
    idempotency_key = fields.String(validate=KEY_CHARS, metadata={"description": "Or the Idempotency-Key header"})
    scheduled_at = Instant(
        allow_none=True,
        load_default=None,
        validate=validate.Range(
            min=datetime(2000, 1, 1, tzinfo=UTC),
            max=datetime(2100, 1, 1, tzinfo=UTC),
            error="must be between 2000 and 2100",
        ),
        metadata={"description": "ISO 8601 with an offset: stay PENDING until then (a past time starts at once)"},
    )
    max_retries = fields.Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(min=0, max=10),
        metadata={"description": "Retry the whole execution automatically, with backoff, if it fails"},
    )
    dry_run = fields.Boolean(
        load_default=False,
        metadata={"description": "Outbound handlers (http, llm) answer with a synthetic response instead of calling"},
    )

    @ma.validates_schema
    def one_workflow(self, data: dict[str, Any], **_: Any) -> None:
        if ("workflow_id" in data) == ("workflow_name" in data):
            raise ma.ValidationError("give exactly one of workflow_id and workflow_name", "workflow_id")

    @ma.pre_load
    def trim_name(self, data: Any, **_: Any) -> Any:
        return _trimmed(data, "workflow_name")


class IdempotencyKeyHeader(fields.String):
    """The Idempotency-Key header as the IETF draft defines it: a Structured Field string
    (RFC 8941), `"abc"` being the key `abc` (with `\\"` and `\\\\` escapes). A bare token,
    as many clients send, is taken as it is."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text.startswith('"'):
            return text
        key, escaped = [], False
        for position, char in enumerate(text[1:], start=1):
            if escaped:
                if char not in '"\\':
                    raise ma.ValidationError('only \\" and \\\\ may be escaped in a quoted key (RFC 8941)')
                key.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                if position != len(text) - 1:
                    raise ma.ValidationError("nothing may follow the closing quote (RFC 8941)")
                return "".join(key)
            else:
                key.append(char)
        raise ma.ValidationError("a quoted key needs its closing quote (RFC 8941)")


class IdempotencyHeaderSchema(ma.Schema):
    idempotency_key = IdempotencyKeyHeader(
        data_key="Idempotency-Key",
        validate=KEY_CHARS,
        metadata={
            "description": 'A Structured Field string ("abc"; a bare token is taken as it is). Its scope: the '
            "workflow version (by workflow_id) or every version of the name (by workflow_name); kept as long as "
            "the execution it made (RETENTION_DAYS after it finished)"
        },
    )
    correlation_id = fields.String(data_key="X-Correlation-ID", validate=validate.Length(min=1, max=200))


ProgressSchema = ma.Schema.from_dict(
    {
        "total": fields.Integer(),
        **{status.value.lower(): fields.Integer() for status in NodeStatus},
        "percent": fields.Float(metadata={"description": "Finished nodes, in percent"}),
    },
    name="Progress",
)


class NodeExecutionSchema(ma.Schema):
    node_id = fields.String()
    status = fields.String(metadata={"enum": [s.value for s in NodeStatus]})
    attempt = fields.Integer()
    error = fields.Dict(allow_none=True)
    not_before = fields.DateTime(allow_none=True, metadata={"description": "UP_FOR_RETRY: the next attempt's time"})
    queued_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    worker_name = fields.String(allow_none=True)
    rq_job_id = fields.String(allow_none=True)


class ExecutionSchema(ma.Schema):
    id = fields.UUID(attribute="execution.id")
    workflow_id = fields.UUID(attribute="workflow.id")
    workflow_name = fields.String(attribute="workflow.name")
    workflow_version = fields.Integer(attribute="workflow.version")
    status = fields.String(attribute="execution.status", metadata={"enum": [s.value for s in ExecutionStatus]})
    idempotency_key = fields.String(attribute="execution.idempotency_key", allow_none=True)
    input_data = fields.Dict(attribute="execution.input")
    error = fields.Dict(attribute="execution.error", allow_none=True)
    attempt = fields.Integer(attribute="execution.attempt")
    correlation_id = fields.String(attribute="execution.correlation_id", allow_none=True)
    max_retries = fields.Integer(attribute="execution.max_retries")
    dry_run = fields.Boolean(attribute="execution.dry_run")
    scheduled_at = fields.DateTime(attribute="execution.scheduled_at", allow_none=True)
    deadline_at = fields.DateTime(attribute="execution.deadline_at", allow_none=True)
    retry_at = fields.DateTime(
        attribute="execution.retry_at", allow_none=True, metadata={"description": "RETRYING: when it resumes"}
    )
    created_at = fields.DateTime(attribute="execution.created_at")
    started_at = fields.DateTime(attribute="execution.started_at", allow_none=True)
    finished_at = fields.DateTime(attribute="execution.finished_at", allow_none=True)


class ExecutionDetailSchema(ExecutionSchema):
    progress = fields.Nested(ProgressSchema)
    nodes = fields.List(
        fields.Nested(NodeExecutionSchema),
        metadata={"description": "A page of the nodes, in the workflow's order (see nodes_limit, node_status)"},
    )
    nodes_next_cursor = fields.Method(
        "next_cursor",
        allow_none=True,
        metadata={"description": "Pass as nodes_cursor (or to /nodes as cursor) for the next page; null at the end"},
    )

    def next_cursor(self, view: Any) -> str | None:
        return None if view.nodes_next is None else str(view.nodes_next)


_CURSOR = validate.Regexp(r"^[0-9]{1,9}$", error="not a cursor from this endpoint")
_NODE_STATUSES = validate.OneOf([s.value for s in NodeStatus])


class ExecutionDetailArgsSchema(ma.Schema):
    node_status = fields.List(
        fields.String(validate=_NODE_STATUSES),
        load_default=list,
        metadata={"description": "Only nodes in these states (repeat the parameter for several)"},
    )
    nodes_limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=0, max=1000),
        metadata={"description": "Nodes to include (0: counts only); the rest is paged"},
    )
    nodes_cursor = fields.String(validate=_CURSOR, metadata={"description": "nodes_next_cursor of the last answer"})


class NodePageArgsSchema(ma.Schema):
    status = fields.List(
        fields.String(validate=_NODE_STATUSES),
        load_default=list,
        metadata={"description": "Only nodes in these states (repeat the parameter for several)"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(validate=_CURSOR, metadata={"description": "next_cursor of the previous page"})


class NodePageSchema(ma.Schema):
    items = fields.List(fields.Nested(NodeExecutionSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as cursor for the next page"})


class ExecutionListArgsSchema(PageArgsSchema):
    workflow_id = fields.UUID()
    workflow_name = fields.String(validate=validate.Length(min=1, max=255))
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in ExecutionStatus])),
        load_default=list,
        metadata={"description": _STATUS_LIST},
    )
    idempotency_key = fields.String(validate=KEY_CHARS)
    correlation_id = fields.String(validate=validate.Length(min=1, max=200))


class ExecutionPageSchema(PageSchema):
    items = fields.List(fields.Nested(ExecutionSchema))


class ResultsSchema(ma.Schema):
    execution_id = fields.UUID(attribute="view.execution.id")
    status = fields.String(attribute="view.execution.status")
    results = fields.Dict(
        keys=fields.String(), values=fields.Raw(), metadata={"description": "Output of each completed node"}
    )


class LogArgsSchema(ma.Schema):
    level = fields.String(
        load_default="debug",
        validate=validate.OneOf(["debug", "info", "warning", "error"]),
        metadata={"description": "The least severity returned"},
    )
    node_id = fields.String(validate=validate.Length(min=1, max=100))
    since = Instant(metadata={"description": "Rows created at or after this time"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(
        validate=validate.Regexp(r"^[0-9]{1,19}$", error="not a cursor from this endpoint"),
        metadata={"description": "next_cursor of the previous page"},
    )


class LogSchema(ma.Schema):
    id = fields.Integer()
    node_id = fields.String(allow_none=True)
    correlation_id = fields.String(allow_none=True, metadata={"description": "The request behind this row"})
    level = fields.String()
    event = fields.String()
    message = fields.String()
    details = fields.Dict()
    created_at = fields.DateTime()


class LogPageSchema(ma.Schema):
    items = fields.List(fields.Nested(LogSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as cursor for the next page"})


class DeadLetterArgsSchema(PageArgsSchema):
    workflow_id = fields.UUID()
    execution_id = fields.UUID()
    category = fields.String(validate=validate.Length(min=1, max=40))
    node_id = fields.String(validate=validate.Length(min=1, max=100))


class DeadLetterSchema(ma.Schema):
    id = fields.UUID()
    execution_id = fields.UUID()
    workflow_id = fields.UUID()
    node_id = fields.String()
    handler = fields.String()
    error_class = fields.String()
    category = fields.String()
    message = fields.String()
    traceback = fields.String(allow_none=True)
    attempts = fields.Integer()
    created_at = fields.DateTime()


class DeadLetterPageSchema(PageSchema):
    items = fields.List(fields.Nested(DeadLetterSchema))
