"""`make demo`: define each workflow in examples/, run it on the local stack, show progress and results."""

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


def run_example(path: Path) -> bool:
    definition = json.loads(path.read_text())
    workflow = call("POST", "/api/v1/workflows", {**definition, "activate": True})
    print(f"\n{workflow['name']} v{workflow['version']}: {len(workflow['nodes'])} nodes")
    execution = call(
        "POST",
        "/api/v1/executions",
        {"workflow_id": workflow["id"], "input_data": {"order_id": "A-1001", "customer": "ada"}},
    )
    last = None
    deadline = time.monotonic() + 60
    while True:
        detail = call("GET", f"/api/v1/executions/{execution['id']}")
        progress = detail["progress"]
        line = f"  {detail['status']:<9} {progress['completed']}/{progress['total']} nodes ({progress['percent']}%)"
        if line != last:
            print(line)
            last = line
        if detail["status"] in ("COMPLETED", "FAILED", "CANCELLED") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    results = call("GET", f"/api/v1/executions/{execution['id']}/results")["results"]
    for node_id, output in results.items():
        print(f"    {node_id}: {json.dumps(output)}")
    print(f"  results: {BASE}/api/v1/executions/{execution['id']}/results")
    return detail["status"] == "COMPLETED"


def main() -> int:
    examples = sorted(EXAMPLES.glob("*.json"))
    outcomes = [run_example(path) for path in examples]
    print(f"\n{sum(outcomes)}/{len(outcomes)} example workflows completed")
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
