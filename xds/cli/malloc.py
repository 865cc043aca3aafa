"""Process memory settings: keep freed heap memory for reuse instead of handing it back to the OS.

xds's hot paths (expert balancing, layout search, the engine) allocate and free a few MB of NumPy
temporaries per call. With glibc's defaults each such block above the mmap threshold (128 KiB at
start) is mmap'ed and unmapped per call, and heap memory above the trim threshold is returned on
every free, so the next call page-faults it back in: on 2 cores that is ~1,600 page faults and ~2 ms
of a 6.5 ms ``balance()`` call on 384 slots, and ~18 % of ``xds plan --search``. Raising both
thresholds keeps up to :data:`TRIM_THRESHOLD` bytes of freed memory in the process.

Applied once by the CLI's ``main`` (never on ``import xds``: a library user's process is not ours to tune); set ``XDS_MALLOC_TUNING=0`` to leave the allocator alone.
Only glibc has ``mallopt``: elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: Freed heap memory kept in the process before glibc returns it to the OS (bytes).
TRIM_THRESHOLD = 64 * 1024 * 1024
#: Blocks at least this large are mmap'ed on their own (bytes); 32 MiB is glibc's ceiling on 64-bit.
MMAP_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1        # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds (once per process). Returns True when they are set,
    False when not on glibc, opted out by ``XDS_MALLOC_TUNING=0``, or refused by the C library."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("XDS_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):       # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _applied
