"""The handler registry: names users put in a DAG, mapped to functions with a config schema.

A handler is `func(config: dict, ctx: NodeContext) -> dict`. It raises
HandlerError to fail; any other exception is an unexpected, retryable failure.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

import marshmallow as ma

from app.domain import retry, templates
from app.domain.errors import Problem


class Defer(Exception):
    """Raised by a handler to wait `seconds` in PostgreSQL without holding a worker;
    the node runs again after, with ctx.woke_from set."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"defer {seconds}s")
        self.seconds = seconds


class RunMode(StrEnum):
    """How a worker runs a handler's nodes: a property of the handler."""

    # Pure and quick, in this process, no outside effect: carried many to a job, and run
    # by the worker whose finish readied them without a trip through Redis. Running one
    # again after a crash changes nothing outside.
    INLINE = "inline"
    # Mostly waits on the network (HTTP, LLM): many at once in the worker's thread pool
    # (WORKER_CONCURRENCY).
    CONCURRENT = "concurrent"
    # Anything else (a plug-in says otherwise if it can): one node per job, alone on the
    # worker's main thread, as RQ runs a job.
    EXCLUSIVE = "exclusive"


MAX_LOG_LINES = 1000


class Dialect(StrEnum):
    """Whose rules a handler's config templates (and its nodes' guards) follow."""

    STEPWISE = "stepwise"  # app/domain/templates.py
    PEER_A = "peer-a"  # app/domain/peer_a.py


STEPWISE, PEER_A = Dialect.STEPWISE, Dialect.PEER_A
LEVELS = ("debug", "info", "warning", "error")
_LEVEL_ALIASES = {"warn": "warning", "critical": "error", "fatal": "error", "exception": "error"}


def normal_level(level: Any) -> str:
    """One of debug, info, warning, error (others are mapped, or info)."""
    name = str(level).lower()
    name = _LEVEL_ALIASES.get(name, name)
    return name if name in LEVELS else "info"


def clean_text(text: str, limit: int) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogates, at most `limit` characters."""
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def storable(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details as JSON PostgreSQL can store; anything else becomes its (cleaned) repr."""
    from app.domain.storable import UnstorableJsonError, check_storable

    try:
        check_storable(dict(details))
        return dict(details)
    except UnstorableJsonError:
        return {str(k): clean_text(repr(v), 1000) for k, v in details.items()}


class HandlerError(Exception):
    """A node failure the handler understands: says whether another attempt can help,
    and may ask for the next one to wait `retry_after` seconds (an HTTP 429, say).
    `category` sorts dead letters: timeout, http_4xx, http_5xx, connection,
    validation, handler_error, ..."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        category: str = "handler_error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = _seconds(retry_after)
        self.category = category
        self.details = details or {}


def _seconds(value: Any) -> float | None:
    """A delay in seconds, or None if it is not a finite number (a raw header, say)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclass(frozen=True)
class LogLine:
    level: str
    message: str
    details: dict[str, Any]


@dataclass
class NodeContext:
    """What a handler knows about the node it runs, and where it writes log lines."""

    execution_id: uuid.UUID
    node_id: str
    attempt: int
    input: Mapping[str, Any]
    correlation_id: str | None = None
    logs: list[LogLine] = field(default_factory=list)
    # The worker's clients for the outside world (HandlerClients); None in unit tests.
    clients: Any = None
    # When the node waited in PostgreSQL (a `delay`), the time it was to wake.
    woke_from: Any = None
    # The execution is a dry run: a handler with side effects must not have them.
    dry_run: bool = False

    @property
    def idempotency_key(self) -> str:
        """`<execution id>:<node id>`, the same for every attempt of this node in this
        execution (retries, a rerun, a run again after its worker died): forward it, and a
        service that honours it makes the effect once (docs/RELIABILITY.md)."""
        return f"{self.execution_id}:{self.node_id}"

    def log(self, level: str, message: str, **details: Any) -> None:
        """A line for the execution's log, stored with the node's result. Made storable
        here: whatever a handler passes must not stop its outcome being recorded."""
        if len(self.logs) >= MAX_LOG_LINES:
            return
        self.logs.append(LogLine(normal_level(level), clean_text(str(message), 10_000), storable(details)))


HandlerFunc = Callable[[dict[str, Any], NodeContext], Any]


class AnyConfig(ma.Schema):
    """For handlers whose config is free-form."""

    class Meta:
        unknown = ma.INCLUDE


@dataclass(frozen=True)
class Handler:
    name: str
    func: HandlerFunc
    schema: type[ma.Schema]
    aliases: tuple[str, ...] = ()
    description: str = ""
    # Its nodes' retry policy unless a node sets its own `retry`.
    retry: retry.RetryPolicy = field(default_factory=retry.RetryPolicy)
    # Runs instead of `func` in a dry run: a synthetic result built from the config,
    # without side effects. Handlers without one run as usual (they have none).
    dry_run: HandlerFunc | None = None
    # Other names templates may read an output key by (`data` for `body`, say), as the
    # peer engines named them; resolved when read, not stored twice.
    output_aliases: Mapping[str, str] = field(default_factory=dict)
    mode: RunMode = RunMode.EXCLUSIVE
    # Whose rules its config's templates follow: Stepwise's (app/domain/templates.py), or
    # peer-a's (app/domain/peer_a.py: two-segment placeholders, Python text, a miss left as
    # written, any completed node readable), for the handlers of peer-a's dialect.
    dialect: Dialect = STEPWISE

    @cached_property
    def config_schema(self) -> ma.Schema:
        """One instance of the config schema, reused for every node (building one per node
        costs more than validating with it)."""
        return self.schema()

    def run(self, config: dict[str, Any], ctx: NodeContext) -> Any:
        """The handler, or its dry-run stand-in when the execution is a dry run."""
        if ctx.dry_run and self.dry_run is not None:
            ctx.log("info", f"dry run: {self.name} did not call out; its output is synthetic", dry_run=True)
            return self.dry_run(config, ctx)
        return self.func(config, ctx)

    def readable(self, output: Any) -> Any:
        """The output as templates see it: with the aliased keys, when it is an object."""
        if not self.output_aliases or not isinstance(output, dict):
            return output
        extra = {
            alias: output[key] for alias, key in self.output_aliases.items() if alias not in output and key in output
        }
        return {**output, **extra} if extra else output


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, handler: Handler) -> None:
        """Add a handler under its name and aliases; a name may be taken once."""
        for name in (handler.name, *handler.aliases):
            if name in self._handlers:
                raise ValueError(f"handler {name!r} is already registered")
            self._handlers[name] = handler

    def get(self, name: str) -> Handler:
        """The handler registered under `name` (KeyError if none)."""
        return self._handlers[name]

    def names(self) -> frozenset[str]:
        """Every registered name, aliases included."""
        return frozenset(self._handlers)

    def handlers(self) -> list[Handler]:
        """Each handler once, by its own name."""
        return sorted({h.name: h for h in self._handlers.values()}.values(), key=lambda h: h.name)

    def readable_output(self, name: str, output: Any) -> Any:
        """A node's output as templates read it (see Handler.output_aliases)."""
        handler = self._handlers.get(name)
        return handler.readable(output) if handler else output

    def dialect(self, name: str) -> Dialect:
        """Whose template rules the handler's configs follow (Stepwise's for a name it does not know)."""
        handler = self._handlers.get(name)
        return handler.dialect if handler else STEPWISE

    def mode(self, name: str) -> RunMode:
        """How a worker runs the handler's nodes (EXCLUSIVE for a name it does not know)."""
        handler = self._handlers.get(name)
        return handler.mode if handler else RunMode.EXCLUSIVE

    def policy(self, name: str, overrides: Mapping[str, Any] | None) -> retry.RetryPolicy:
        """The retry policy of a node: its handler's, with the node's own settings over it."""
        handler = self._handlers.get(name)
        return (handler.retry if handler else retry.RetryPolicy()).overridden(overrides)

    def config_problems(self, node_id: str, name: str, config: Mapping[str, Any]) -> list[Problem]:
        """What is wrong with a node's config at definition time.

        A value that is a template cannot be checked until it is resolved at run
        time, so errors on such values are left for the run to report.
        """
        handler = self._handlers.get(name)
        if handler is None:
            return []  # reported as unknown_handler by the DAG check
        if handler.schema is AnyConfig:
            return []  # free-form: nothing to check (and ten thousand nodes of it is common)
        errors = handler.config_schema.validate(dict(config))
        return [
            Problem(f"config.{path}", message, "invalid_config", node_id)
            for path, message in _flatten(errors)
            if not templates.is_template(_lookup(config, path))
        ]

    def load_config(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """The resolved config, validated and with defaults; a bad one fails the node for good."""
        try:
            return self._handlers[name].config_schema.load(dict(config))
        except ma.ValidationError as err:
            detail = "; ".join(f"{path}: {message}" for path, message in _flatten(err.messages))
            raise HandlerError(f"invalid config: {detail}", category="validation") from err


registry = HandlerRegistry()


def handler(
    name: str,
    *,
    schema: type[ma.Schema] = AnyConfig,
    aliases: tuple[str, ...] = (),
    retry_policy: retry.RetryPolicy | None = None,
    dry_run: HandlerFunc | None = None,
    output_aliases: Mapping[str, str] | None = None,
    mode: RunMode = RunMode.EXCLUSIVE,
    dialect: Dialect = STEPWISE,
    into: HandlerRegistry | None = None,
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register the decorated function as the handler `name`; `dry_run` stands in for
    it in dry runs, `output_aliases` lets templates read a key by another name, `mode`
    says how workers run it (see RunMode; a plug-in is EXCLUSIVE unless it declares more)."""

    def decorate(func: HandlerFunc) -> HandlerFunc:
        """Register and return the function unchanged."""
        summary = (func.__doc__ or "").strip().split("\n")[0]
        (into or registry).register(
            Handler(
                name,
                func,
                schema,
                aliases,
                summary,
                retry_policy or retry.RetryPolicy(),
                dry_run,
                dict(output_aliases or {}),
                mode,
                dialect,
            )
        )
        return func

    return decorate


def _flatten(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(errors, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in errors.items():
            out.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [(prefix or "_schema", " ".join(errors))]
    return [(prefix or "_schema", str(errors))]


def _lookup(config: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(config, Mapping):
            config = config.get(part)
        elif isinstance(config, list) and part.isdigit() and int(part) < len(config):
            config = config[int(part)]
        else:
            return None
    return config
