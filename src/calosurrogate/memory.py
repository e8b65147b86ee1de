"""Freed memory reused while sampling on CPU (Linux with glibc).

One sampling batch of 10,000 ds2 showers makes tensors of 260 MB (ds3: 1.6 GB), far above
glibc's largest mmap threshold (32 MiB). Every element-wise operation then maps fresh pages,
which the kernel must zero before handing them over, and unmaps them when the tensor dies: on a
CPU this zeroing can take a quarter of a batch's time (the kernel's ``clear_page`` was the top
entry of a WGAN sampling profile). Inside :func:`reused_memory`, malloc serves every block from
its heap (``M_MMAP_MAX = 0``) and keeps what is freed (``M_TRIM_THRESHOLD = -1``), so each
batch reuses the pages of the one before. On leaving, blocks are mapped again and the kept
memory goes back to the system (``malloc_trim``). The showers do not change; the peak resident
memory grows by the freed blocks the heap cannot hand to the next request, which grows with the
blocks' size: ds2 at batch 10,000 (260 MB blocks) +6-30%, ds3 at batch 10,000 (1.6 GB blocks)
8.4 -> 14 GB. Blocks above :data:`LARGEST_REUSED_BYTES` are therefore left to mmap.

``CALOSURROGATE_REUSE_MEMORY=0`` switches it off (read when a sampling pass starts); on other C
libraries it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Iterator

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
# After the first free of a block of 32 MiB or more, glibc's own dynamic rule sets the trim
# threshold to twice its largest mmap threshold: the state big tensors leave it in anyway.
_TRIM_AFTERWARDS = 2 * 32 * 1024 * 1024

LARGEST_REUSED_BYTES = 512 * 2**20

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def enabled() -> bool:
    """Whether :func:`reused_memory` changes anything here (glibc, and not switched off)."""
    return os.environ.get("CALOSURROGATE_REUSE_MEMORY", "1") != "0" and _glibc() is not None


@contextlib.contextmanager
def reused_memory(block_bytes: int = 0) -> Iterator[None]:
    """Within it, memory freed by this process stays mapped and is reused (module docstring).

    Args:
        block_bytes: Size of the largest tensors the work makes (one batch of showers); above
            :data:`LARGEST_REUSED_BYTES` nothing changes.

    Re-entrant and thread-safe: the settings change when the outermost use starts and come back
    when the last one ends.
    """
    global _depth
    if not enabled() or block_bytes > LARGEST_REUSED_BYTES:
        yield
        return
    libc = _glibc()
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, -1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_AFTERWARDS)
                libc.malloc_trim(0)


__all__ = ["LARGEST_REUSED_BYTES", "enabled", "reused_memory"]
