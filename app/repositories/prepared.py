"""Statements PostgreSQL parses and plans once per connection: PREPARE, then EXECUTE.

The per-node statements are data-modifying CTEs whose planning costs as much as
their execution (docs/PERFORMANCE.md); psycopg2 never prepares on its own. A
Prepared statement is written with named parameters and their PostgreSQL types;
the first use on a connection sends PREPARE (which outlives a rolled-back
transaction), every use sends EXECUTE with the values, adapted by psycopg2.
A connection that is replaced starts with none prepared. (Behind a pooler in
transaction mode, such as PgBouncer's, prepared statements do not carry over:
connect to PostgreSQL directly.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy.orm import Session

_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PREPARED = "stepwise_prepared"
_NAMES: set[str] = set()


class Prepared:
    """One statement, prepared per connection on first use."""

    def __init__(self, name: str, sql: str, parameters: Sequence[tuple[str, str]]) -> None:
        self.name = f"stepwise_{name}"
        if self.name in _NAMES:
            raise ValueError(f"a statement named {name!r} is prepared already")
        _NAMES.add(self.name)
        self.parameters = [parameter for parameter, _ in parameters]
        position = {parameter: i + 1 for i, parameter in enumerate(self.parameters)}
        unknown = set(_PARAMETER.findall(sql)) - set(position)
        if unknown:
            raise ValueError(f"{name}: parameters without a type: {sorted(unknown)}")
        positional = _PARAMETER.sub(lambda m: f"${position[m[1]]}", sql)
        types = ", ".join(pg_type for _, pg_type in parameters)
        self._prepare = f"PREPARE {self.name} ({types}) AS {positional}"
        self._execute = f"EXECUTE {self.name} ({', '.join(f'%({p})s' for p in self.parameters)})"

    def execute(self, session: Session, values: Mapping[str, Any]) -> CursorResult[Any]:
        """Run it in the session's transaction with these values (one per parameter)."""
        connection = session.connection()
        prepared = connection.connection.info.setdefault(_PREPARED, set())
        if self.name not in prepared:
            connection.exec_driver_sql(self._prepare)
            prepared.add(self.name)
        return connection.exec_driver_sql(self._execute, {p: values[p] for p in self.parameters})
