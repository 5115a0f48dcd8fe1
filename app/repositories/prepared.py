"""Statements PostgreSQL parses and plans once per connection: PREPARE, then EXECUTE.

The per-node statements are data-modifying CTEs whose planning costs as much as
their execution (docs/PERFORMANCE.md); psycopg2 never prepares on its own. A
Prepared statement is written with named parameters and their PostgreSQL types;
the first use on a connection sends PREPARE (which outlives a rolled-back
transaction), every use sends EXECUTE with the values, adapted by psycopg2. They
run on the session's own connection, in its transaction, through the DBAPI cursor:
these statements are on every node's path, and SQLAlchemy's result machinery cost
more than PostgreSQL's work on them. A connection that is replaced starts with none
prepared. (Behind a pooler in transaction mode, such as PgBouncer's, prepared
statements do not carry over: connect to PostgreSQL directly.)
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg2
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PREPARED = "stepwise_prepared"
_NAMES: set[str] = set()


class Rows:
    """What an EXECUTE returned: rows with their columns by name."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]


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
        self._execute = f"EXECUTE {self.name} ({', '.join(['%s'] * len(self.parameters))})"
        self._row: Callable[[Iterable[Any]], tuple[Any, ...]] | None = None  # a namedtuple's _make

    def execute(self, session: Session, values: Mapping[str, Any]) -> Rows:
        """Run it in the session's transaction with these values (one per parameter).
        Errors are SQLAlchemy's (IntegrityError, OperationalError...), and a connection
        found broken is invalidated, as a statement run through SQLAlchemy would be."""
        bound = session.connection()
        connection = bound.connection  # the pooled DBAPI connection
        prepared = connection.info.setdefault(_PREPARED, set())
        cursor = connection.cursor()
        try:
            if self.name not in prepared:
                cursor.execute(self._prepare)
                prepared.add(self.name)
            cursor.execute(self._execute, [values[p] for p in self.parameters])
            if cursor.description is None:
                return Rows([])
            if self._row is None:
                # column[0] is the name (PEP 249). Names known only at run time: typeshed's
                # namedtuple() then returns a plain tuple type, without _make.
                names = [column[0] for column in cursor.description]
                self._row = namedtuple("Row", names)._make  # type: ignore[attr-defined]
            row = self._row
            return Rows([row(found) for found in cursor.fetchall()])
        except psycopg2.Error as err:
            # SQLAlchemy types the error as its DBAPIModule protocol's own Error class, which no
            # driver's exception is: its own calls pass the driver's, as here.
            broken = bound.dialect.is_disconnect(err, connection.dbapi_connection, cursor)  # type: ignore[arg-type]
            if broken:
                # PostgreSQL went away: so did the pool's other connections. A fresh pool,
                # as SQLAlchemy does on a disconnect it sees itself.
                bound.invalidate(err)
                bound.engine.dispose(close=False)
            raise DBAPIError.instance(
                self._execute, None, err, psycopg2.Error, connection_invalidated=broken, dialect=bound.dialect
            ) from err
        finally:
            if not cursor.closed:
                cursor.close()
