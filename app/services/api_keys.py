"""API keys: create (the key is shown once), authenticate, list, revoke."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.domain.errors import ConflictError, NotFoundError, UnprocessableError
from app.domain.roles import Role
from app.models import ApiKey
from app.repositories import api_keys as api_keys_repo

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
    """The identity of a live key; None for an unknown or revoked one. No cache: a
    revocation takes effect on the next request."""
    with session.begin():
        row = api_keys_repo.by_hash(session, hash_key(key))
        if row is None:
            return None
        api_keys_repo.mark_used(session, row.id)
        return Identity(row.id, row.name, Role(row.role))


def list_keys(session: Session) -> list[ApiKey]:
    """Every key (hashes never leave)."""
    with session.begin():
        return api_keys_repo.all_keys(session)


def revoke_key(session: Session, id_or_name: str) -> ApiKey:
    """Revoke a key by id or name."""
    with session.begin():
        row = api_keys_repo.revoke(session, id_or_name)
        if row is None:
            raise NotFoundError(f"no live key {id_or_name!r}")
        return row
