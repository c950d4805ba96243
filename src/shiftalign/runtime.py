"""Process-wide settings a training run applies before it allocates: the C allocator on Linux.

glibc's malloc serves every request above 32 MB (its largest mmap threshold) with a fresh ``mmap`` and
returns it with ``munmap`` on free. A training step on the packaged model frees and re-allocates such
blocks every step: the (vocabulary x hidden) gradients of the tied embedding (113 MB each) and the
(chunk x vocabulary) logits of the chunked head (50 MB). Each fresh block is zero-filled page by page
by the kernel on first touch, which on a 2-core machine costs about as much as the matrix product
that writes it. With ``M_MMAP_MAX = 0`` every request comes from the heap, and with a trim threshold
above any heap size freed blocks stay mapped for reuse, which is what jemalloc and tcmalloc (the
allocators PyTorch's CPU tuning guide recommends preloading) do by default. Its effect on one RLOO update of
bench/rl_iteration.py, time and peak memory: BENCHMARKS.md.

``SHIFTALIGN_MALLOC=system`` leaves the allocator as it is (as does any platform other than glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Keep freed heap memory for reuse (glibc only; once per process). True when it is in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("SHIFTALIGN_MALLOC", "reuse") == "system":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False
        # mallopt returns 1 on success; the trim threshold is an int, so the largest one it takes.
        _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except OSError:
        return False
    return _applied
