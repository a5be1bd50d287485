"""Returning freed tensor memory to the operating system during training steps (glibc).

glibc serves an allocation above its mmap threshold with mmap and unmaps it on free; below, it
comes from the heap, where freed memory stays part of the process. After freeing an mmapped block,
glibc raises the threshold to that block's size (up to 32 MB). A training step allocates and frees
activations of many sizes layer by layer; once the threshold has risen they come from the heap,
whose high-water mark then holds them all: SmolLM2-135M's SFT step on 6 rows peaked 2.6 GB above the
loaded model with the threshold at 32 MB, 0.27 GB at 128 KB (benchmarks/real_model_bench.py).

Generation wants the opposite. Its KV caches grow by a copy each decoded token; with a low threshold
every copy is a fresh mmap whose pages the kernel zeroes, and evaluating the tiny Sokoban model spent
twice the system time. So the threshold is low only inside training steps (`training_memory`) and
at glibc's ceiling outside them, where the heap reuses what generation frees.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
TRAINING_THRESHOLD = 128 * 1024  # glibc's own starting value
OUTSIDE_THRESHOLD = 32 * 1024 * 1024  # the ceiling of glibc's own adjustment on 64-bit systems

_depth = 0  # training_memory blocks entered and not left (they nest)


@lru_cache(maxsize=1)
def _glibc() -> Any:
    """libc with mallopt, or None off glibc and when MALLOC_MMAP_THRESHOLD_ chose a threshold."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # musl has neither


@contextmanager
def training_memory() -> Iterator[bool]:
    """Inside: blocks above 128 KB are mmapped, so memory a training step frees leaves the process
    and its peak is what it holds at once. Yields whether glibc's threshold is being managed."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    _depth += 1
    if _depth == 1:
        libc.malloc_trim(0)  # heap memory generation freed goes back before the step's peak
        _set_thresholds(libc, TRAINING_THRESHOLD)
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            _set_thresholds(libc, OUTSIDE_THRESHOLD)


def _set_thresholds(libc: Any, mmap_threshold: int) -> None:
    # As glibc's own adjustment does: the heap's free top is kept up to twice the mmap threshold, so
    # a block freed there is not handed back to the kernel only to be faulted in again.
    libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    libc.mallopt(M_TRIM_THRESHOLD, 2 * mmap_threshold)
