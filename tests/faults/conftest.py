"""The fault suite's stack: one per module, since a fault may leave scars (a restarted
Redis, a recovered PostgreSQL) that the next test must not inherit unawares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    own = Stack(tmp_path_factory.mktemp("faults"))
    yield own
    own.close()
