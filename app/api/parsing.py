"""Strict request parsing: JSON that PostgreSQL can store, or a 400 that says where it breaks.

Python's json module accepts NaN, Infinity and 1e400, and strings may carry
NUL or lone surrogates; PostgreSQL's jsonb and text take none of them. Left
to the database these would be 500s; here they are 400s naming the place.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import flask
import flask_smorest
import marshmallow as ma
from flask_smorest.utils import get_appcontext
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

from app.domain.storable import BAD_TEXT, MAX_DEPTH, UnstorableJsonError, check_storable


def _reject_constant(name: str) -> NoReturn:
    raise UnstorableJsonError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnstorableJsonError(f"{text} is out of range for a JSON number")
    return value


def loads(raw: bytes) -> Any:
    """Parse a request body strictly; UnicodeDecodeError, json.JSONDecodeError or
    UnstorableJsonError when it will not do."""
    text = raw.decode("utf-8")  # UnicodeDecodeError: webargs hands it to _handle_invalid_json_error
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as err:
        raise UnstorableJsonError(f"nested more than {MAX_DEPTH} levels deep") from err
    except UnstorableJsonError:
        raise
    except ValueError as err:
        if isinstance(err, json.JSONDecodeError):
            raise
        raise UnstorableJsonError(str(err)) from err  # e.g. an integer with too many digits
    check_storable(value)
    return value


class StrictParser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            return core.missing
        raw = req.get_data(cache=True)
        if not raw:
            return core.missing
        try:
            return loads(raw)
        except UnstorableJsonError as err:
            abort(400, message=f"the JSON body cannot be stored: {err}")

    def _handle_invalid_json_error(self, error: Any, req: flask.Request, *args: Any, **kwargs: Any) -> NoReturn:
        if isinstance(error, json.JSONDecodeError):
            where = f"line {error.lineno} column {error.colno} (char {error.pos})"
            abort(400, message=f"malformed JSON at {where}: {error.msg}")
        if isinstance(error, UnicodeDecodeError):
            abort(400, message=f"the body is not UTF-8: {error.reason} at byte {error.start}")
        abort(400, message=f"malformed JSON: {error}")

    def load_querystring(self, req: flask.Request, schema: ma.Schema) -> Any:
        """The query string, refusing NUL characters."""
        _check_text_values(req.args, "query")
        return super().load_querystring(req, schema)

    def load_headers(self, req: flask.Request, schema: ma.Schema) -> Any:
        """The headers, refusing NUL characters."""
        _check_text_values(req.headers, "header")
        return super().load_headers(req, schema)


def _check_text_values(values: Any, where: str) -> None:
    for key, value in values.items():
        if BAD_TEXT.search(key) or BAD_TEXT.search(value):
            abort(400, message=f"the {where} parameter {key!r} holds a NUL character or a lone surrogate")


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict parser, and the ETag kept for a 304's header."""

    ARGUMENTS_PARSER = StrictParser()

    def _check_not_modified(self, etag: str) -> None:
        get_appcontext().setdefault("etag", {})["etag"] = etag
        super()._check_not_modified(etag)
