"""Kill every process of one browser pool once the process that owns the pool is gone.

Run as a script (`python -I reaper.py RUN_DIR TAG`) by `BrowserPool`: it blocks reading its stdin,
whose other end only the pool's process holds. EOF means that process closed the pool or died
(even by SIGKILL, which runs no cleanup code), and then every process whose environment carries
`GROUPWISE_MINIWOB_TAG=TAG` or whose command line mentions RUN_DIR (Playwright's node driver,
Chromium and all of Chromium's helpers) is killed and RUN_DIR removed.

Standard library only, and importable, so the pool and the tests share `tagged_pids`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

TAG_VAR = "GROUPWISE_MINIWOB_TAG"


def tagged_pids(tag: str, run_dir: str | None = None) -> list[int]:
    """Pids (other than this process) whose environment has TAG_VAR=tag or cmdline mentions run_dir."""
    marker = f"{TAG_VAR}={tag}".encode()
    needle = run_dir.encode() if run_dir else None
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in environ or (needle is not None and needle in cmdline and b"reaper.py" not in cmdline):
            found.append(int(name))
    return found


def kill_all(tag: str, run_dir: str | None = None, deadline_s: float = 10.0) -> int:
    """SIGKILL the tagged processes until none is left (helpers may appear while we kill)."""
    killed = 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = tagged_pids(tag, run_dir)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.05)
    return killed


def main(argv: list[str]) -> int:
    run_dir, tag = argv[1], argv[2]
    # Ctrl-C in a terminal must not take the reaper down before the browsers it guards.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    kill_all(tag, run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
