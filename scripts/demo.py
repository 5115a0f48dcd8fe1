"""`make demo`: run each workflow in examples/ through /api/v1 and each in examples/peer/ through
the peers' API, as dry runs on the local stack; show progress and results."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BASE = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def api_key() -> str:
    """STEPWISE_API_KEY, else the admin key `make run` made."""
    key = os.environ.get("STEPWISE_API_KEY")
    if key:
        return key
    try:
        return (ROOT / ".data" / "admin.key").read_text().strip()
    except FileNotFoundError:
        raise SystemExit("no API key: start the stack with `make run`, or set STEPWISE_API_KEY") from None


def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        raise SystemExit(f"{method} {path} -> {err.code}: {err.read().decode()}") from err
    except urllib.error.URLError as err:
        raise SystemExit(f"cannot reach {BASE} ({err.reason}); start the stack with `make run`") from err


# Node states as `progress` counts them: settled ones first, then those still to settle.
SETTLED = ("completed", "skipped", "failed", "upstream_failed", "cancelled")
UNSETTLED = ("pending", "queued", "running", "up_for_retry", "deferred")


def progress_line(status: str, progress: dict[str, Any]) -> str:
    """`COMPLETED 5/5 nodes settled (4 completed, 1 skipped)`: the count and its parts agree."""
    settled = sum(progress.get(state, 0) for state in SETTLED)
    parts = [f"{progress[state]} {state.replace('_', ' ')}" for state in SETTLED + UNSETTLED if progress.get(state)]
    return f"  {status:<9} {settled}/{progress['total']} nodes settled ({', '.join(parts) or 'none yet'})"


def watch(status_path: str, results_path: str) -> bool:
    """Print the progress until the execution finishes, then each node's output."""
    last = None
    deadline = time.monotonic() + 60
    while True:
        detail = call("GET", status_path)
        line = progress_line(detail["status"], detail["progress"])
        if line != last:
            print(line)
            last = line
        if detail["status"] in ("COMPLETED", "FAILED", "CANCELLED") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for node_id, output in call("GET", results_path)["results"].items():
        print(f"    {node_id}: {json.dumps(output)[:160]}")
    print(f"  results: {BASE}{results_path}")
    return detail["status"] == "COMPLETED"


def run_example(path: Path) -> bool:
    """Through /api/v1: define, then trigger as a dry run (outbound calls are simulated)."""
    definition = json.loads(path.read_text())
    workflow = call("POST", "/api/v1/workflows", {**definition, "activate": True})
    print(f"\n{workflow['name']} v{workflow['version']}: {len(workflow['nodes'])} nodes, dry run")
    execution = call(
        "POST",
        "/api/v1/executions",
        {"workflow_id": workflow["id"], "input_data": {"order_id": "A-1001", "customer": "ada"}, "dry_run": True},
    )
    eid = execution["id"]
    return watch(f"/api/v1/executions/{eid}", f"/api/v1/executions/{eid}/results")


def run_peer_example(path: Path) -> bool:
    """Through the peers' API: submit the payload file as it is, trigger it, poll it."""
    accepted = call("POST", "/workflow", json.loads(path.read_text()))
    eid = accepted["execution_id"]
    print(f"\npeer/{path.name}: POST /workflow -> {accepted['message']}; trigger ?dry_run=true")
    call("POST", f"/workflow/trigger/{eid}?dry_run=true")
    return watch(f"/workflows/{eid}", f"/workflows/{eid}/results")


def main() -> int:
    outcomes = [run_example(path) for path in sorted(EXAMPLES.glob("*.json"))]
    outcomes += [run_peer_example(path) for path in sorted((EXAMPLES / "peer").glob("*.json"))]
    print(f"\n{sum(outcomes)}/{len(outcomes)} example workflows completed")
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
