"""Allocator settings that keep activation caching cheap on the CPU.

A cache of every hook point keeps each activation of a forward pass alive
(about 145 MB for the embedded CLIP vision tower at batch 256). With glibc's
default settings, freeing that much at once gives it back to the kernel.
Large blocks live in their own ``mmap`` regions, and the top of the heap is
trimmed when more than the trim threshold of it is free. The next forward
pass then faults in fresh, zeroed pages for its activations, 11 000 to
33 000 minor page faults per call, and caching every hook cost 1.18x to
1.34x a plain forward pass on 2 cores (``benchmarks/bench_cache_overhead.py``).

:func:`retain_freed_memory` raises both thresholds through ``mallopt`` so
freed blocks stay in the process and are reused. The price is that the
process does not give memory back to the system after a large pass, up to
``max_retained_bytes``. On a C library other than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import dataclass

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# mallopt takes an int, so 2**31 - 1 bytes is the largest value it accepts.
_INT_MAX = 2**31 - 1
DEFAULT_MAX_RETAINED_BYTES = 2**30

_applied: int | None = None


@dataclass(frozen=True)
class AllocatorSettings:
    """Outcome of :func:`retain_freed_memory`: whether glibc accepted the thresholds, and their value in bytes."""

    applied: bool
    threshold_bytes: int | None
    reason: str


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def retain_freed_memory(max_retained_bytes: int = DEFAULT_MAX_RETAINED_BYTES) -> AllocatorSettings:
    """Set glibc's mmap and trim thresholds so freed activation buffers stay in the process.

    Blocks up to ``max_retained_bytes`` come from the heap instead of their
    own ``mmap`` region, and up to that much free memory at the top of the
    heap is kept instead of returned to the kernel. Calling it again with the
    same value does nothing. The settings last for the life of the process.

    Raises:
        ValueError: if ``max_retained_bytes`` is not an int between 128 KB
            (glibc's default) and 2**31 - 1.
    """
    global _applied
    if isinstance(max_retained_bytes, bool) or not isinstance(max_retained_bytes, int):
        raise ValueError(f"max_retained_bytes must be an int, got {max_retained_bytes!r}")
    if not 128 * 1024 <= max_retained_bytes <= _INT_MAX:
        raise ValueError(
            f"max_retained_bytes must be between {128 * 1024} and {_INT_MAX} bytes, got {max_retained_bytes}"
        )
    if _applied == max_retained_bytes:
        return AllocatorSettings(True, max_retained_bytes, "already set")
    libc = _glibc()
    if libc is None:
        return AllocatorSettings(False, None, f"not glibc ({platform.system()} {platform.libc_ver()[0] or 'unknown libc'})")
    # glibc may reject a threshold. Setting the mmap threshold first means that
    # a rejection there leaves both thresholds as they were.
    if not libc.mallopt(M_MMAP_THRESHOLD, max_retained_bytes):
        return AllocatorSettings(False, None, f"glibc rejected an mmap threshold of {max_retained_bytes} bytes")
    if not libc.mallopt(M_TRIM_THRESHOLD, max_retained_bytes):
        return AllocatorSettings(False, None, f"glibc rejected a trim threshold of {max_retained_bytes} bytes")
    _applied = max_retained_bytes
    return AllocatorSettings(True, max_retained_bytes, "set")
