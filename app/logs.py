"""Structured logs: one JSON object per line on stdout, with the correlation id, execution
and node where known, and no secrets."""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from app import correlation

# API keys and bearer tokens, wherever they would appear in a message.
_SECRETS = re.compile(r"(Bearer\s+)\S+|\bsw_[A-Za-z0-9_-]{8,}|(X-API-Key[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+", re.I)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m[1] or m[2] or "") + "[REDACTED]", text)


class ContextFilter(logging.Filter):
    """Adds the work at hand to every record, and redacts secrets from the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation.correlation_id.get()
        record.execution_id = correlation.execution_id.get()
        record.node_id = correlation.node_id.get()
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on stdout for this process (API, worker or scheduler)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s %(execution_id)s %(node_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Alembic announces each of its plugins at INFO whenever it loads; that is noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
