"""A worker's engine: runs the nodes its RQ jobs carry, and the children it continues into.

How a node runs depends on its handler's RunMode:

- INLINE nodes come many to a job. The batch is claimed in one statement and run here,
  one after another, outside any transaction; their outcomes are recorded together.
  Children they ready that are INLINE too are claimed in that same transaction and run
  here without a trip through Redis: a few (a chain) inside the open transaction, so a
  hop costs three statements and no commit; many (a fan-out) after it commits, so other workers can
  record meanwhile. This goes on for a time slice (WORKER_SLICE_MS); then the
  transaction commits and what is ready goes to RQ, where other executions' jobs wait.
- EXCLUSIVE nodes come one to a job and run here, alone, outside any transaction.
- CONCURRENT nodes run in a thread pool (WORKER_CONCURRENCY). A job's nodes are claimed
  as slots free; the job returns once they are all in the pool, so this thread takes the
  next job while they wait on the network. A recorder thread records their outcomes in
  batches and continues into CONCURRENT children while slots are free.

Handlers on this thread are timed with SIGALRM and stopped (a cancel) with STOP_SIGNAL;
pool threads cannot be interrupted, so a pooled node past its timeout is recorded as
timed out at once and its late result dropped. Every node claimed and not yet recorded
is `held`: the heartbeat reports them, so the scheduler does not call them lost.

A node cannot take its worker down: its resolved config and its output have size limits,
and a node on this thread (its config's templates and its handler) that grows the
worker's memory by more than NODE_MEMORY_LIMIT_MB is stopped by the same signal, failed
for good, and the memory handed back. (Pooled handlers are the network ones, bounded by
MAX_RESPONSE_BYTES.)
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from app import correlation, metrics
from app.db import unreachable
from app.domain import templates
from app.domain.storable import UnstorableJsonError, check_storable
from app.domain.templates import TemplateResolutionError
from app.handlers import HandlerError, NodeContext, registry
from app.handlers.clients import HandlerClients
from app.handlers.registry import Defer, RunMode
from app.repositories.claims import ClaimedNode
from app.runtime import Runtime
from app.services import node_runs
from app.services.node_runs import Failure, Outcome
from app.services.progress import Continuation
from workers import memory

log = logging.getLogger(__name__)

# A cancel reaches this process on RQ's pubsub thread; it signals the main thread, which
# raises NodeStopped inside the handler.
STOP_SIGNAL = signal.SIGUSR1
# Children readied together that this thread runs inside the open transaction; more
# than this, and the transaction commits first so other workers are not kept waiting.
NARROW = 4
_RECORDER_WAIT_SECONDS = 0.2
_MEMORY_LOOK_SECONDS = 0.05  # how often the memory guard looks at the worker's size
_GIVE_BACK_BYTES = 64 * memory.MB  # a node that grew the worker this much: its memory goes back


class NodeStopped(BaseException):
    """Raised inside a handler whose node was cancelled. A BaseException, so a handler's
    `except Exception` does not swallow it."""


class NodeTimeout(Exception):
    """Raised inside a handler that ran past its node's timeout."""


class NodeOverMemory(BaseException):
    """Raised inside a node (its templates or its handler) that grew the worker's memory
    past NODE_MEMORY_LIMIT_MB. A BaseException, like NodeStopped."""


class Slots:
    """The pool's free threads, taken several at a time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._changed = threading.Condition()

    def take(self, wanted: int, block: bool = True) -> int:
        """Up to `wanted` free slots; with `block`, waits for at least one."""
        with self._changed:
            while block and self._free == 0:
                self._changed.wait()
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    def give(self, count: int) -> None:
        if count:
            with self._changed:
                self._free += count
                self._changed.notify_all()

    def idle(self) -> bool:
        with self._changed:
            return self._free == self.size


Held = tuple[uuid.UUID, int]  # a node execution and the attempt of it a worker holds
_ALL = 1 << 30  # a continuation budget with no bound of its own (the fair share and the slice bound it)


@dataclass
class _Pooled:
    node: ClaimedNode
    deadline: float
    timed_out: bool = False


def _key(node: ClaimedNode) -> Held:
    return (node.id, node.attempt)


class Engine:
    """Runs nodes for one worker process (see the module docstring)."""

    def __init__(self, rt: Runtime, clients: HandlerClients, worker_name: str) -> None:
        settings = rt.settings
        self.rt, self.clients, self.worker_name = rt, clients, worker_name
        self.slice_seconds = settings.worker_slice_ms / 1000
        self.default_timeout = settings.default_node_timeout_seconds
        self.slots = Slots(settings.worker_concurrency)
        self._pool = ThreadPoolExecutor(settings.worker_concurrency, thread_name_prefix="stepwise-node")
        self._outcomes: queue.Queue[Outcome] = queue.Queue()
        self._pooled: dict[Held, _Pooled] = {}
        self._held: set[Held] = set()
        self._stop_asked: set[uuid.UUID] = set()  # cancelled while held: not to start, or to stop
        self._lock = threading.Lock()
        self._in_handler: uuid.UUID | None = None  # the node running on the main thread
        self._memory_base = 0  # the worker's resident size when that node started
        self._over_memory: uuid.UUID | None = None  # the node the memory guard stops
        self.memory_limit = settings.node_memory_limit_mb * memory.MB
        self.max_config_bytes = settings.max_resolved_config_bytes
        self.max_output_bytes = settings.max_output_bytes
        self._job_id = ""  # the RQ job this process runs (or ran last)
        self._stopping = threading.Event()
        self._recorder: threading.Thread | None = None
        self._guard: threading.Thread | None = None

    # What the heartbeat reports, and what a cancel reaches.

    def held(self) -> list[uuid.UUID]:
        """Every node claimed here and not yet recorded."""
        with self._lock:
            return list({node_id for node_id, _ in self._held})

    def _hold(self, nodes: Sequence[ClaimedNode]) -> None:
        with self._lock:
            self._held.update(_key(node) for node in nodes)

    def _release(self, nodes: Sequence[ClaimedNode]) -> None:
        with self._lock:
            self._held.difference_update(_key(node) for node in nodes)
            self._stop_asked.difference_update(node.id for node in nodes)

    def stop(self, node_ids: Sequence[uuid.UUID]) -> None:
        """A cancel: a held node not started yet will not start, and the handler on the main
        thread is interrupted if it runs one of these. A pooled node cannot be interrupted;
        its late result is dropped when it returns."""
        with self._lock:
            held = {node_id for node_id, _ in self._held}
            self._stop_asked.update(node_id for node_id in node_ids if node_id in held)
        running = self._in_handler
        if running is not None and running in node_ids:
            signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)

    def raise_if_in_handler(self, *_: Any) -> None:
        """The STOP_SIGNAL handler (main thread): stop the node still running, if it is the
        one the memory guard or a cancel asked to stop (not one that started since)."""
        running = self._in_handler
        if running is None:
            return
        if running == self._over_memory:
            raise NodeOverMemory()
        if running in self._stop_asked:
            raise NodeStopped()

    def _start_guard(self) -> None:
        """The memory guard's thread, once per process, from the thread that runs nodes
        (which the guard's signal interrupts, so it must have its handler)."""
        if self._guard is not None or self.memory_limit <= 0 or memory.resident_bytes() is None:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(STOP_SIGNAL, self.raise_if_in_handler)
        self._guard = threading.Thread(target=self._guard_memory, name="stepwise-memory", daemon=True)
        self._guard.start()

    def _guard_memory(self) -> None:
        while True:
            time.sleep(_MEMORY_LOOK_SECONDS)
            running, base = self._in_handler, self._memory_base
            if running is None or running == self._over_memory:
                continue
            grown = (memory.resident_bytes() or 0) - base
            if grown > self.memory_limit and running == self._in_handler:
                log.warning("node %s grew the worker by %d MB: stopping it", running, grown // memory.MB)
                self._over_memory = running
                signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)

    def _stop_was_asked(self, node: ClaimedNode) -> bool:
        with self._lock:
            return node.id in self._stop_asked

    # The main thread: one RQ job.

    def run_job(self, job_id: str, mode: RunMode, wanted: Sequence[tuple[uuid.UUID, int]]) -> None:
        """Run the nodes one job carries (see the module docstring)."""
        self._job_id = job_id
        self._start_guard()
        with self.rt.sessions() as session:
            if mode == RunMode.CONCURRENT:
                self._submit(session, wanted)
                return
            claimed = self._claim(session, wanted)
            if not claimed:
                return
            known: dict[uuid.UUID, dict[str, Any]] = {}
            outcomes = [self._run_here(session, node, known) for node in claimed]
            self._record_and_continue(session, job_id, outcomes, known, time.monotonic() + self.slice_seconds)

    def _claim(self, session: Session, wanted: Sequence[tuple[uuid.UUID, int]]) -> list[ClaimedNode]:
        # Held before the claim commits: a heartbeat in between must not miss them. Only
        # what this worker did not hold already is let go after (a duplicate delivery of
        # a job whose nodes it runs must not unhold them).
        with self._lock:
            added = set(wanted) - self._held
            self._held.update(added)
        claimed: list[ClaimedNode] = []
        try:
            claimed = node_runs.claim_nodes(session, wanted, self.worker_name)
        finally:
            with self._lock:
                self._held.difference_update(added - {_key(node) for node in claimed})
        if len(claimed) < len(wanted):
            log.debug("%d of %d node(s) were not QUEUED: claimed elsewhere", len(wanted) - len(claimed), len(wanted))
        return claimed

    def _record_and_continue(
        self,
        session: Session,
        job_id: str,
        outcomes: list[Outcome],
        known: dict[uuid.UUID, dict[str, Any]],
        deadline: float,
    ) -> None:
        """Record outcomes, and run the INLINE children they ready, until the slice ends.
        Outcomes are kept until recorded: while PostgreSQL is away this waits for it."""
        waiting = _Backoff()
        while outcomes:
            first, claimed = outcomes, []
            try:
                with self._recording(session) as recording:
                    while outcomes:
                        budget = {RunMode.INLINE: _ALL} if time.monotonic() < deadline else {}
                        continuation = Continuation(self.worker_name, job_id, budget)
                        claimed, outcomes = recording.record(outcomes, continuation).claimed, []
                        if claimed and len(claimed) <= NARROW:
                            # A chain: its next links run inside this transaction.
                            outcomes = [self._run_here(session, node, known) for node in claimed]
                            claimed = []
            except (DataError, IntegrityError):
                self._record_one_by_one(session, first)
                return
            except DBAPIError as err:
                if not unreachable(err):
                    self._release([o.node for o in first])
                    raise  # a bug: the scheduler recovers these nodes
                waiting.wait(f"PostgreSQL is unreachable; {len(first)} outcome(s) wait to be recorded", err)
                outcomes = first  # the transaction rolled back, children it ran included
                continue
            except BaseException:
                self._release([o.node for o in first])
                raise
            if claimed:
                # A fan-out: committed first, run, recorded in the next transaction.
                outcomes = [self._run_here(session, node, known) for node in claimed]

    def _record_one_by_one(self, session: Session, outcomes: Sequence[Outcome]) -> None:
        """The database refused a batch's data (not merely could not be reached): record
        each outcome alone, and one it still refuses as a plain failure, rather than leave
        a node RUNNING to be run again."""
        for outcome in outcomes:
            try:
                self._record_patiently(session, [outcome])
            except (DataError, IntegrityError) as err:
                log.exception("node %s: its outcome could not be recorded", outcome.node.node_id)
                failure = Failure(
                    type(err).__name__, "handler_error", f"its outcome could not be recorded: {err.orig}", False
                )
                self._record_patiently(session, [Outcome(outcome.node, failure=failure, logs=outcome.logs)])

    def _record_patiently(
        self, session: Session, outcomes: Sequence[Outcome], *, into_pool: bool = False
    ) -> list[ClaimedNode]:
        """Record outcomes in a transaction of their own, waiting for PostgreSQL while it is
        away. With `into_pool`, claim for this worker the CONCURRENT children they ready, as
        many as the pool has free slots for (taken for them); those children."""
        waiting = _Backoff()
        while True:
            try:
                with self._recording(session) as recording:
                    if not into_pool:
                        return recording.record(outcomes, None).claimed
                    free = 0 if self._stopping.is_set() else self.slots.take(self.slots.size, block=False)
                    try:
                        continuation = Continuation(self.worker_name, self._job_id, {RunMode.CONCURRENT: free})
                        claimed = recording.record(outcomes, continuation).claimed
                    except BaseException:
                        self.slots.give(free)
                        raise
                    self.slots.give(free - len(claimed))
                    return claimed
            except DBAPIError as err:
                if not unreachable(err):
                    raise
                waiting.wait(f"PostgreSQL is unreachable; {len(outcomes)} outcome(s) wait to be recorded", err)

    @contextmanager
    def _recording(self, session: Session) -> Iterator[_TrackedRecording]:
        """A transaction to record outcomes in. Their nodes stop being held once it commits;
        children it claims are held until their own outcomes are (or it rolls back)."""
        tracked: _TrackedRecording | None = None
        try:
            with node_runs.recording(session, self.rt.dispatcher) as recording:
                tracked = _TrackedRecording(recording, self._hold)
                yield tracked
        except BaseException:
            if tracked is not None:
                self._release(tracked.claimed)
            raise
        self._release(tracked.nodes)

    def _run_here(self, session: Session, node: ClaimedNode, known: dict[uuid.UUID, dict[str, Any]]) -> Outcome:
        """Run one node on this thread, timed and stoppable; its outcome."""
        with self._node_context(node):
            ctx = self._context(node)
            started = time.perf_counter()
            try:
                with self._handling(node):
                    config = self._config(session, node, known.get(node.execution_id))
                    if self._stop_was_asked(node):
                        raise NodeStopped()
                    with self._timer(node):
                        output = registry.get(node.handler).run(config, ctx)
                outcome = Outcome(node, output=self._as_output(output), logs=ctx.logs)
            except NodeStopped:
                log.info("node %s of execution %s stopped: cancelled", node.node_id, node.execution_id)
                outcome = Outcome(node, stopped=True, logs=ctx.logs)
            except NodeOverMemory:
                outcome = Outcome(node, failure=self._over_memory_failure(), logs=ctx.logs)
            except Exception as err:
                outcome = self._within_timeout(_failed(node, err, ctx), time.perf_counter() - started)
            _observe(outcome, time.perf_counter() - started)
        if outcome.failure is None and outcome.defer_seconds is None and not outcome.stopped:
            readable = registry.readable_output(node.handler, outcome.output)
            known.setdefault(node.execution_id, {})[node.node_id] = readable
        return outcome

    @contextmanager
    def _handling(self, node: ClaimedNode) -> Iterator[None]:
        """The node runs on this thread: a cancel or the memory guard may stop it. After, the
        memory it grew the worker by goes back to the system."""
        # Plain assignments, no lock: the stop signal's handler reads these on this thread,
        # and waiting for a lock here could be interrupted by it.
        base = memory.resident_bytes() or 0
        self._memory_base, self._in_handler = base, node.id
        try:
            yield
        finally:
            self._in_handler = None
            if self._over_memory == node.id or (memory.resident_bytes() or 0) - base > _GIVE_BACK_BYTES:
                memory.give_back()
            self._over_memory = None

    @contextmanager
    def _timer(self, node: ClaimedNode) -> Iterator[None]:
        """SIGALRM when the node's timeout is up, raising NodeTimeout inside the handler (at
        once if it is up already: it counts from the attempt's start, before any wait)."""
        seconds = self._timeout(node)
        left = seconds - node.elapsed

        def expired(*_: Any) -> None:
            raise NodeTimeout(f"the node ran past its timeout of {seconds:g}s")

        if left <= 0:
            expired()
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _timeout(self, node: ClaimedNode) -> float:
        return node.timeout_seconds or self.default_timeout

    def _within_timeout(self, outcome: Outcome, ran: float) -> Outcome:
        """A wait (Defer) that would end past the node's timeout is cut short: the node wakes
        when its time is up, and times out then, whatever the handler asked."""
        if outcome.defer_seconds is None:
            return outcome
        left = max(self._timeout(outcome.node) - outcome.node.elapsed - ran, 0.0)
        return outcome if outcome.defer_seconds <= left else replace(outcome, defer_seconds=left)

    # CONCURRENT nodes: the pool and its recorder.

    def _submit(self, session: Session, wanted: Sequence[tuple[uuid.UUID, int]]) -> None:
        """Claim the job's nodes as slots free and hand them to the pool."""
        self._start_recorder()
        pending = list(wanted)
        while pending:
            free = self.slots.take(len(pending))
            chunk, pending = pending[:free], pending[free:]
            claimed: list[ClaimedNode] = []
            try:
                claimed = self._claim(session, chunk)
            finally:
                self.slots.give(free - len(claimed))
            self._to_pool(session, claimed)

    def _to_pool(self, session: Session, claimed: Sequence[ClaimedNode]) -> None:
        """Resolve each node's config here (the pool does not touch the database), then run
        it there; its slot was taken by the caller."""
        for node in claimed:
            try:
                with self._node_context(node), self._handling(node):
                    config = self._config(session, node, None)
            except (Exception, NodeStopped, NodeOverMemory) as err:
                self.slots.give(1)
                self._outcomes.put(self._not_started(node, err))
                continue
            left = self._timeout(node) - node.elapsed
            with self._lock:
                self._pooled[_key(node)] = _Pooled(node, time.monotonic() + left)
            self._pool.submit(self._run_pooled, node, config)

    def _not_started(self, node: ClaimedNode, err: BaseException) -> Outcome:
        """The outcome of a pooled node stopped while its config was resolved here."""
        ctx = self._context(node)
        if isinstance(err, NodeStopped):
            return Outcome(node, stopped=True)
        if isinstance(err, NodeOverMemory):
            return Outcome(node, failure=self._over_memory_failure())
        assert isinstance(err, Exception)
        return _failed(node, err, ctx)

    def _over_memory_failure(self) -> Failure:
        limit = self.memory_limit // memory.MB
        message = f"the node grew its worker's memory by more than NODE_MEMORY_LIMIT_MB ({limit} MB)"
        return Failure("MemoryLimit", "memory", message, False)

    def _run_pooled(self, node: ClaimedNode, config: dict[str, Any]) -> None:
        try:
            with self._node_context(node):
                ctx = self._context(node)
                started = time.perf_counter()
                try:
                    if self._stop_was_asked(node):
                        raise NodeStopped()
                    output = self._as_output(registry.get(node.handler).run(config, ctx))
                    outcome = Outcome(node, output=output, logs=ctx.logs)
                except NodeStopped:
                    outcome = Outcome(node, stopped=True, logs=ctx.logs)
                except Exception as err:
                    outcome = self._within_timeout(_failed(node, err, ctx), time.perf_counter() - started)
                _observe(outcome, time.perf_counter() - started)
            with self._lock:
                pooled = self._pooled.pop(_key(node), None)
            if pooled is not None and not pooled.timed_out:
                self._outcomes.put(outcome)  # before its slot is given back: see _record_pooled
        finally:
            self.slots.give(1)

    def _start_recorder(self) -> None:
        with self._lock:
            if self._recorder is None:
                self._recorder = threading.Thread(target=self._record_pooled, name="stepwise-recorder", daemon=True)
                self._recorder.start()

    def _record_pooled(self) -> None:
        """The recorder thread: pooled outcomes, recorded in batches, until drained. (Idle
        slots first: a pooled thread puts its outcome before it frees its slot.)"""
        with self.rt.sessions() as session:
            while not (self._stopping.is_set() and self.slots.idle() and self._outcomes.empty()):
                batch = self._next_outcomes()
                if not batch:
                    continue
                try:
                    claimed = self._record_patiently(session, batch, into_pool=True)
                except (DataError, IntegrityError):
                    self._record_one_by_one(session, batch)
                    continue
                except Exception:
                    log.exception("could not record %d pooled outcome(s)", len(batch))
                    self._release([o.node for o in batch])  # the scheduler recovers them
                    continue
                self._to_pool(session, claimed)

    def _next_outcomes(self) -> list[Outcome]:
        batch: list[Outcome] = []
        try:
            batch.append(self._outcomes.get(timeout=_RECORDER_WAIT_SECONDS))
            while True:
                batch.append(self._outcomes.get_nowait())
        except queue.Empty:
            pass
        return batch + self._timed_out()

    def _timed_out(self) -> list[Outcome]:
        """Pooled nodes past their timeout: failed now; their threads' results are dropped."""
        now, expired = time.monotonic(), []
        with self._lock:
            for pooled in self._pooled.values():
                if not pooled.timed_out and now > pooled.deadline:
                    pooled.timed_out = True
                    expired.append(pooled.node)
        return [
            Outcome(node, failure=Failure("Timeout", "timeout", "the node ran past its timeout", retryable=True))
            for node in expired
        ]

    def drain(self, timeout: float | None = None) -> None:
        """Wait for the pooled nodes and their recording (a warm shutdown)."""
        self._stopping.set()
        if self._recorder is not None:
            self._recorder.join(timeout)
        self._pool.shutdown(wait=False)

    # Shared by both kinds of thread.

    def _context(self, node: ClaimedNode) -> NodeContext:
        return NodeContext(
            node.execution_id,
            node.node_id,
            node.attempt,
            node.input,
            node.correlation_id,
            clients=self.clients,
            woke_from=node.woke_from,
            dry_run=node.dry_run,
        )

    @contextmanager
    def _node_context(self, node: ClaimedNode) -> Iterator[None]:
        cid = correlation.correlation_id.get() or node.correlation_id
        with correlation.bound(cid, node.execution_id, node.node_id):
            yield

    def _config(self, session: Session, node: ClaimedNode, known: dict[str, Any] | None) -> dict[str, Any]:
        """The node's config, templates resolved, validated by its handler's schema. One that
        templates grew past MAX_RESOLVED_CONFIG_BYTES fails the node for good."""
        try:
            resolved = node_runs.resolve_config(session, node, known)
        except TemplateResolutionError as err:
            raise HandlerError(str(err), category="validation") from err
        if next(templates.walk(node.config), None) is not None:  # without templates: checked at definition
            size = _json_bytes(resolved)
            if size > self.max_config_bytes:
                raise HandlerError(
                    f"the config is {size} bytes once its templates are resolved, over "
                    f"MAX_RESOLVED_CONFIG_BYTES ({self.max_config_bytes})",
                    category="too_large",
                )
        return registry.load_config(node.handler, resolved)

    def _as_output(self, value: Any) -> Any:
        return _as_output(value, self.max_output_bytes)


class _Backoff:
    """Waits between tries at something that is away: 0.5 s, doubling to 4 s (a connect
    attempt is cheap, and what waits is a finished effect); logs each wait."""

    def __init__(self) -> None:
        self.seconds = 0.5

    def wait(self, what: str, err: BaseException) -> None:
        log.warning("%s (%s); trying again in %.1f s", what, type(err).__name__, self.seconds)
        time.sleep(self.seconds)
        self.seconds = min(self.seconds * 2, 4.0)


class _TrackedRecording:
    """A recording that remembers the nodes whose outcomes it took and the children it
    claimed (held from now on), and logs late results."""

    def __init__(self, recording: node_runs.Recording, hold: Callable[[Sequence[ClaimedNode]], None]) -> None:
        self.recording, self.hold = recording, hold
        self.nodes: list[ClaimedNode] = []
        self.claimed: list[ClaimedNode] = []

    def record(self, outcomes: Sequence[Outcome], continuation: Continuation | None) -> node_runs.Recorded:
        recorded = self.recording.record(outcomes, continuation)
        self.nodes.extend(o.node for o in outcomes)
        self.claimed.extend(recorded.claimed)
        self.hold(recorded.claimed)
        for late in recorded.dropped:
            log.info("node %s attempt %s: a late result, dropped", late.node.node_id, late.node.attempt)
        return recorded


def _failed(node: ClaimedNode, err: Exception, ctx: NodeContext) -> Outcome:
    if isinstance(err, Defer):
        return Outcome(node, defer_seconds=err.seconds, logs=ctx.logs)
    return Outcome(node, failure=_failure(err), logs=ctx.logs)


def _failure(err: Exception) -> Failure:
    trace = "".join(traceback.format_exception(err))
    if isinstance(err, HandlerError):
        return Failure(type(err).__name__, err.category, err.message, err.retryable, err.retry_after, trace)
    if isinstance(err, NodeTimeout):
        return Failure("Timeout", "timeout", str(err), True, None, trace)
    if isinstance(err, MemoryError):  # it would run out again
        return Failure("MemoryError", "memory", "the node ran its worker out of memory", False, None, trace)
    log.error("a handler raised %s", type(err).__name__, exc_info=err)
    return Failure(type(err).__name__, "handler_error", str(err) or type(err).__name__, True, None, trace)


def _as_output(value: Any, max_bytes: int) -> dict[str, Any]:
    """Outputs are JSON objects PostgreSQL can store, at most `max_bytes` (MAX_OUTPUT_BYTES);
    anything else is wrapped as {"result": value}."""
    output = value if isinstance(value, dict) else {"result": value}
    try:
        check_storable(output)
    except UnstorableJsonError as err:
        raise HandlerError(f"the output cannot be stored: {err}", category="validation") from err
    size = _json_bytes(output)
    if size > max_bytes:
        raise HandlerError(f"the output is {size} bytes, over MAX_OUTPUT_BYTES ({max_bytes})", category="too_large")
    return output


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _observe(outcome: Outcome, elapsed: float) -> None:
    node = outcome.node
    kind = (
        "stopped"
        if outcome.stopped
        else "deferred"
        if outcome.defer_seconds is not None
        else "failed"
        if outcome.failure
        else "completed"
    )
    metrics.NODE_DURATION.labels(node.handler, kind).observe(elapsed)
    log.info(
        "node %s attempt %s %s in %.1f ms",
        node.node_id,
        node.attempt,
        kind,
        elapsed * 1000,
        extra={"handler": node.handler, "attempt": node.attempt, "outcome": kind},
    )
