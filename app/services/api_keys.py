"""API keys: create (the key is shown once), authenticate, list, revoke."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from app.domain.errors import ConflictError, NotFoundError, UnprocessableError
from app.domain.roles import Role
from app.models import ApiKey
from app.repositories import api_keys as api_keys_repo
from app.repositories import paging

log = logging.getLogger(__name__)

PREFIX = "sw_"


@dataclass(frozen=True)
class Identity:
    """Who is calling: the key's id and name, and its role."""

    key_id: uuid.UUID | None
    name: str
    role: Role


def hash_key(key: str) -> str:
    # Keys are 256 random bits: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str, role: str) -> tuple[ApiKey, str]:
    """A new key: the row, and the key itself, which is not kept and cannot be shown again."""
    try:
        role = Role(role)
    except ValueError as err:
        raise UnprocessableError(f"role must be one of {', '.join(Role)}") from err
    key = PREFIX + secrets.token_urlsafe(32)
    with session.begin():
        row = api_keys_repo.add(session, name, role, hash_key(key), key[: len(PREFIX) + 6])
        if row is None:
            raise ConflictError(f"a key named {name!r} exists")
    return row, key


def authenticate(session: Session, key: str) -> Identity | None:
    """The identity of a live key; None for an unknown or revoked one. Asks PostgreSQL
    (KeyCache asks it only for keys it has not seen lately)."""
    with session.begin():
        row = api_keys_repo.by_hash(session, hash_key(key))
        if row is None:
            return None
        api_keys_repo.mark_used(session, row.id)
        return Identity(row.id, row.name, Role(row.role))


# Bumped by every revocation; a process whose cache was filled under another value empties it.
GENERATION_KEY = "stepwise:api-keys:generation"
_UNTRUSTED = object()  # the counter could not be read


@dataclass
class _Cached:
    identity: Identity
    until: float  # monotonic time the entry expires
    touched: float  # when this process last wrote last_used_at


class KeyCache:
    """Identities of keys seen lately, so that authenticating a request costs no SQL.

    A revocation bumps a counter in Redis that every process reads on each request; a
    changed counter empties the cache, so a revoked key stops working at once,
    everywhere. When Redis cannot say, the cache is not trusted and PostgreSQL is asked.
    Entries also expire after `ttl` seconds (a key revoked behind the API's back), and
    `last_used_at` is written at most once a minute per key and process.
    """

    def __init__(self, redis: Redis, ttl: float = 60.0, touch_every: float = 60.0) -> None:
        self.redis, self.ttl, self.touch_every = redis, ttl, touch_every
        self._entries: dict[str, _Cached] = {}
        self._generation: bytes | str | None = None
        self._lock = threading.Lock()

    def authenticate(self, session: Session, key: str) -> Identity | None:
        """The identity of a live key; None for an unknown or revoked one."""
        digest = hash_key(key)
        generation = self._current()
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(digest) if generation is not _UNTRUSTED else None
        if cached is not None and cached.until > now:
            if now - cached.touched >= self.touch_every:
                cached.touched = now
                with session.begin():
                    api_keys_repo.mark_used(session, cached.identity.key_id)  # type: ignore[arg-type]
            return cached.identity
        identity = authenticate(session, key)
        with self._lock:
            # Only under the counter it was read under: a revocation that moved it meanwhile
            # may have come after this read.
            if identity is not None and generation is not _UNTRUSTED and generation == self._generation:
                self._entries[digest] = _Cached(identity, now + self.ttl, now)
        return identity

    def _current(self) -> bytes | str | object | None:
        """Read the revocation counter, emptying the cache if it moved; _UNTRUSTED when
        Redis cannot say."""
        try:
            generation = self.redis.get(GENERATION_KEY)
        except RedisError:
            return _UNTRUSTED
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
        return generation

    def forget(self) -> None:
        """A key was revoked: every process empties its cache (this one at once, in case
        Redis is away; the others when they see the counter move)."""
        with self._lock:
            self._entries.clear()
        try:
            self.redis.incr(GENERATION_KEY)
        except RedisError:
            log.warning("could not tell other processes of a revoked key; their caches expire within a minute")


def list_keys(
    session: Session, *, after: paging.Key | None = None, limit: int = 1000, count: bool = False
) -> paging.Page[ApiKey]:
    """A page of keys, newest first (hashes never leave)."""
    with session.begin():
        return api_keys_repo.page(session, after=after, limit=limit, count=count)


def revoke_key(session: Session, cache: KeyCache, id_or_name: str) -> ApiKey:
    """Revoke a key by id or name; every process's cache forgets it."""
    with session.begin():
        row = api_keys_repo.revoke(session, id_or_name)
        if row is None:
            raise NotFoundError(f"no live key {id_or_name!r}")
    cache.forget()
    return row
