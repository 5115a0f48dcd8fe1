"""A worker's memory, as the memory ceiling per node sees it: the process's resident size,
and handing freed memory back to the system after a node that grew it."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from collections.abc import Callable
from functools import cache

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024 * 1024


_statm: tuple[int, int] | None = None  # (pid, fd): kept open, read with pread (a node reads it twice)


def resident_bytes() -> int | None:
    """This process's resident set size; None where /proc cannot say (not Linux)."""
    global _statm
    try:
        if _statm is None or _statm[0] != os.getpid():  # a forked child has a /proc/self of its own
            _statm = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def give_back() -> None:
    """Collect, then ask glibc to return free heap to the system: without it, a worker
    keeps the peak of its largest node for the rest of its life."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
