"""Freed memory reused while sampling: inside the context a block freed by one batch is handed
to the next without new page faults; outside it (and after it) fresh pages are faulted in again."""

from __future__ import annotations

import resource

import pytest
import torch

from calosurrogate import memory
from calosurrogate.memory import reused_memory

pytestmark = pytest.mark.skipif(not memory.enabled(), reason="glibc only")

BLOCK = 64 * 2**20 // 4  # floats: 64 MiB, above glibc's largest mmap threshold


def faults_of_a_reallocation() -> int:
    """Minor page faults of allocating and filling a block right after one of its size was freed."""
    first = torch.ones(BLOCK)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = torch.ones(BLOCK)
    del second
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def steady_faults() -> int:
    """Faults of a reallocation once the heap has grown to hold the block (as from a sampling
    pass's second batch on)."""
    faults_of_a_reallocation()
    return min(faults_of_a_reallocation() for _ in range(2))


def test_a_freed_block_is_reused_only_inside() -> None:
    assert steady_faults() >= 16  # fresh pages (32 even as 2 MiB huge pages)
    with reused_memory():
        assert steady_faults() < 8
    assert steady_faults() >= 16


def test_nested_uses_keep_it_until_the_outermost_ends() -> None:
    with reused_memory():
        with reused_memory():
            assert steady_faults() < 8
        assert steady_faults() < 8
    assert steady_faults() >= 16


def test_switched_off_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CALOSURROGATE_REUSE_MEMORY", "0")
    assert not memory.enabled()
    with reused_memory():
        assert steady_faults() >= 16


def test_blocks_above_the_limit_are_left_to_mmap() -> None:
    """Reusing blocks of gigabytes grew the heap by gigabytes (ds3 at batch 10,000): not done."""
    with reused_memory(block_bytes=memory.LARGEST_REUSED_BYTES + 1):
        assert steady_faults() >= 16
    with reused_memory(block_bytes=memory.LARGEST_REUSED_BYTES):
        assert steady_faults() < 8
