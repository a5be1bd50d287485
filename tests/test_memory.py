"""algos/memory.py: inside a training step freed tensor memory leaves the process; outside, the heap
reuses it instead of mapping fresh pages for every generated token."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import resource, sys
    from contextlib import nullcontext
    from pathlib import Path
    import torch
    from algos.memory import training_memory

    def rss_mb():
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def step():
        # A training step in miniature: a big tensor freed (glibc then raises its own threshold),
        # then big activations freed while small tensors allocated after them stay alive.
        a = torch.ones(4_000_000)
        del a
        base, keep = rss_mb(), []
        for i in range(8):
            b = torch.ones(4_000_000 + 1000 * i)
            keep.append(torch.ones(1000))
            del b
        return rss_mb() - base

    def page_faults():
        # Generation in miniature: a KV-cache-sized tensor copied and freed, again and again.
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            torch.ones(2_000_000).sum()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    mode = sys.argv[1]
    if mode == "nested":
        with training_memory() as managed:
            with training_memory():
                pass
            print(managed, step())  # still inside the outer block
    elif mode == "faults":
        with training_memory() as managed:
            inside = page_faults()
        print(managed, inside, page_faults())
    else:
        with training_memory() if mode == "managed" else nullcontext(False) as managed:
            print(managed, step())
""")


def _probe(mode: str, **env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**{k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}, **env})
    return out.stdout.split()


glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


@glibc
def test_freed_activations_leave_the_process_inside_a_training_step():
    managed, with_block = _probe("managed")
    _, without = _probe("plain")
    assert managed == "True"
    assert float(with_block) < 4 and float(without) > float(with_block) + 8, (with_block, without)  # MB kept


@glibc
def test_an_inner_block_leaves_the_outer_one_managed():
    managed, retained = _probe("nested")
    assert managed == "True" and float(retained) < 4, retained


@glibc
def test_outside_training_the_heap_reuses_freed_blocks():
    managed, inside, outside = _probe("faults")
    # 20 fresh 8 MB mappings fault in ~40k pages; reused heap memory faults only the first time
    assert managed == "True" and int(outside) < int(inside) / 4, (inside, outside)


def test_a_threshold_the_user_chose_is_left_alone():
    assert _probe("managed", MALLOC_MMAP_THRESHOLD_="65536")[0] == "False"
