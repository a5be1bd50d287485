"""Returning freed tensor memory to the operating system (glibc).

glibc serves large allocations with mmap and gives them back on free, but after freeing one it
raises its mmap threshold to that size (up to 32 MB), so later tensors of that size come from the
heap, where freed memory stays part of the process. A training step allocates and frees activations
of many sizes layer by layer, and the heap's high-water mark then holds them all: SmolLM2-135M's SFT
step on 6 rows peaked 2.2 GB above the loaded model, and 0.27 GB with the threshold fixed
(benchmarks/real_model_bench.py). Fixing the threshold turns the adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for this process (from now on); True when
    set. Does nothing off glibc, or when MALLOC_MMAP_THRESHOLD_ in the environment chose one."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
