"""algos/memory.py: with glibc's mmap threshold fixed, freed tensor memory leaves the process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A training step in miniature: a big tensor freed (glibc then raises its threshold), then big
# activations freed while small tensors allocated after them stay alive.
PROBE = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from algos.memory import return_freed_memory

    def rss_mb():
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    fixed = return_freed_memory() if sys.argv[1] == "fix" else False
    a = torch.ones(4_000_000)
    del a
    base, keep = rss_mb(), []
    for i in range(8):
        b = torch.ones(4_000_000 + 1000 * i)
        keep.append(torch.ones(1000))
        del b
    print(fixed, rss_mb() - base)
""")


def _probe(mode: str, **env: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**{k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}, **env})
    fixed, retained = out.stdout.split()
    return fixed, float(retained)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_activations_leave_the_process_once_the_threshold_is_fixed():
    fixed, with_fix = _probe("fix")
    _, without = _probe("plain")
    assert fixed == "True"
    assert with_fix < 4 and without > with_fix + 8, (with_fix, without)  # MB kept after the frees


def test_a_threshold_the_user_chose_is_left_alone():
    assert _probe("fix", MALLOC_MMAP_THRESHOLD_="65536")[0] == "False"
