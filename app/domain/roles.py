"""API key roles. Each includes the ones below it: an admin may do what a writer may."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    READER = "reader"  # read: GET endpoints
    WRITER = "writer"  # and define workflows, trigger executions
    ADMIN = "admin"  # and cancel, retry, dead letters, keys


_RANK = {Role.READER: 0, Role.WRITER: 1, Role.ADMIN: 2}


def allows(held: Role | str, required: Role | str) -> bool:
    """Whether a key with role `held` may do what needs `required`."""
    return _RANK[Role(held)] >= _RANK[Role(required)]
