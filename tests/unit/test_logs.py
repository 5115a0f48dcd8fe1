"""JSON log lines: the work at hand on every line, and no key or token ever."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app import correlation, logs


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("INFO", stream)
    yield stream
    root.handlers, root.level = saved[0], saved[1]


def read(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_carries_the_correlation_execution_and_node(lines: io.StringIO) -> None:
    with correlation.bound("order-1001", "exec-1", "price"):
        logging.getLogger("stepwise.test").info("priced %s", "A-1")
    logging.getLogger("stepwise.test").info("outside")
    inside, outside = read(lines)
    assert inside["message"] == "priced A-1" and inside["level"] == "INFO" and inside["logger"] == "stepwise.test"
    assert (inside["correlation_id"], inside["execution_id"], inside["node_id"]) == ("order-1001", "exec-1", "price")
    assert (outside["correlation_id"], outside["execution_id"], outside["node_id"]) == (None, None, None)


@pytest.mark.parametrize(
    "message",
    [
        "Authorization: Bearer sw_Zq8Yb1rT0c9pX2wV7uN4mK3jH6gF5dS1aQ",
        "called with sw_Zq8Yb1rT0c9pX2wV7uN4mK3jH6gF5dS1aQ inside",
        "headers {'X-API-Key': 'zz-secret-zz'}",
        "X-API-Key=zz-secret-zz",
        "bearer opaque.jwt.token",
    ],
)
def test_keys_and_tokens_never_reach_a_line(lines: io.StringIO, message: str) -> None:
    logging.getLogger("stepwise.test").warning(message)
    logging.getLogger("stepwise.test").warning("%s", message)  # as an argument too
    text = lines.getvalue()
    for secret in ("sw_Zq8Yb1rT0c9pX2wV7uN4mK3jH6gF5dS1aQ", "zz-secret-zz", "opaque.jwt.token"):
        assert secret not in text
    # both lines were written, each with its secret replaced (not the line dropped)
    assert [line["message"].count("[REDACTED]") for line in read(lines)] == [1, 1]
