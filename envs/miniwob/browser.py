"""A pool of warm Chromium browsers for MiniWoB++, and the guarantee that none outlives its owner.

Launching Chromium costs about a second; opening a fresh context in a running browser costs a few
milliseconds. So each process keeps `size` browsers warm (Debian's Chromium driven by Playwright,
launched as in `envs.webshop.browser`) and every episode gets a new context in one of them: no
cookies, storage, history or page state leak from one episode into the next.

No Chromium is left behind, even when the owning process is SIGKILLed (an EnvPool worker that hung
and was killed): Playwright starts its node driver, which starts Chromium, and neither notices a
killed grandparent reliably. Every process of the pool therefore carries a unique tag in its
environment, and a tiny reaper process (`reaper.py`) waits for EOF on a pipe that only the owner
holds; when the owner is gone it kills every tagged process. Playwright puts its temporary profile
(`--user-data-dir`) under the pool's own run directory, so the tag also shows on Chromium's
command line, and the reaper removes that directory.

Network: pages come from the `miniwob` package over file://; every other request is aborted, and
host-name resolution is switched off as a second fence.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from envs.miniwob.reaper import TAG_VAR
from envs.webshop.browser import CHROMIUM_ARGS, chromium_path

# Smooth scrolling makes a wheel step land over several frames; MiniWoB's scroll tasks score the
# final position, so scroll in one jump. No host names resolve: the task pages are local files.
EXTRA_ARGS = ("--disable-smooth-scrolling", "--host-resolver-rules=MAP * ~NOTFOUND", "--mute-audio")
_ENV_LOCK = threading.Lock()  # os.environ is edited briefly while the driver starts


class BrowserPool:
    """`size` warm browsers of this process; `new_context()` hands out fresh contexts round-robin.

    Playwright's sync API runs one driver per thread at a time, so a process normally has one pool:
    use `shared_pool()`, and close it before building another.
    """

    def __init__(self, size: int = 1, launch_timeout_ms: int = 30_000):
        if size < 1:
            raise ValueError(f"a browser pool needs at least 1 browser, got size={size}")
        self.size = size
        self.launch_timeout_ms = launch_timeout_ms
        self.run_dir = tempfile.mkdtemp(prefix="groupwise-miniwob-")
        self.tag = Path(self.run_dir).name
        self._reaper = _start_reaper(self.run_dir, self.tag)
        self._playwright: Any = None
        self._browsers: list[Any] = [None] * size
        self._next = 0
        self._lock = threading.Lock()
        self.launches = 0  # how many browsers were (re)launched: crashes show here

    def browser(self) -> Any:
        """The next browser in turn, launched on first use and again when it has died."""
        with self._lock:
            slot = self._next
            self._next = (self._next + 1) % self.size
            current = self._browsers[slot]
            if current is None or not current.is_connected():
                self._browsers[slot] = current = self._launch()
            return current

    def new_context(self, width: int, height: int) -> Any:
        """A fresh, isolated context with only file:// requests allowed.

        Time zone and locale are fixed so that dates and times a page prints do not depend on the
        machine it runs on."""
        browser = self.browser()
        context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1,
                                      service_workers="block", timezone_id="UTC", locale="en-US")
        context.route(_is_remote, lambda route: route.abort("blockedbyclient"))
        return context

    def discard(self, browser: Any) -> None:
        """Close `browser` (a failed reset suspects it); its slot relaunches on next use."""
        with self._lock:
            for i, b in enumerate(self._browsers):
                if b is browser:
                    self._browsers[i] = None
        _quietly(browser.close)

    def close(self) -> None:
        """Close the browsers and the driver, then let the reaper sweep and remove the run dir."""
        with self._lock:
            for b in self._browsers:
                if b is not None:
                    _quietly(b.close)
            self._browsers = [None] * self.size
            if self._playwright is not None:
                _quietly(self._playwright.stop)
                self._playwright = None
            if self._reaper.stdin and not self._reaper.stdin.closed:
                _quietly(self._reaper.stdin.close)  # EOF: the reaper kills leftovers and exits
                _quietly(lambda: self._reaper.wait(timeout=15))

    def _launch(self) -> Any:
        if self._playwright is None:
            self._playwright = _start_driver(self.run_dir, self.tag)
        env = {**os.environ, TAG_VAR: self.tag}
        browser = self._playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=[*CHROMIUM_ARGS, *EXTRA_ARGS],
            env=env, timeout=self.launch_timeout_ms, handle_sigint=False, handle_sigterm=False,
            handle_sighup=False)
        self.launches += 1
        return browser


_shared: dict[str, BrowserPool] = {}


def shared_pool(size: int = 1) -> BrowserPool:
    """This process's browser pool (created on first use; later `size`s are ignored).

    All MiniWoB envs of a process share it, so an EnvPool worker with several envs keeps `size`
    browsers warm rather than one per env.
    """
    with _ENV_LOCK:
        pool = _shared.get("pool")
        if pool is None or pool._reaper.poll() is not None:
            pool = _shared["pool"] = BrowserPool(size)
            import atexit

            atexit.register(pool.close)
        return pool


def close_shared_pool() -> None:
    """Close this process's shared pool if one is running (the next `shared_pool()` starts anew).

    Playwright's sync API keeps an event loop running in the thread that started it, so until
    the pool is closed, that thread can neither `asyncio.run` nor start another sync Playwright."""
    with _ENV_LOCK:
        pool = _shared.pop("pool", None)
    if pool is not None:
        pool.close()


def _is_remote(url: str) -> bool:
    return not url.startswith(("file:", "data:", "about:"))


def _start_reaper(run_dir: str, tag: str) -> subprocess.Popen:
    script = Path(__file__).with_name("reaper.py")
    env = {k: v for k, v in os.environ.items() if k != TAG_VAR}
    # A new session: a terminal's Ctrl-C or a kill of our process group must not reach it.
    return subprocess.Popen([sys.executable, "-I", str(script), run_dir, tag], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True, close_fds=True)


def _start_driver(run_dir: str, tag: str) -> Any:
    """Start Playwright's driver with the tag in its environment and TMPDIR in our run dir.

    Playwright's driver takes os.environ as it is at start-up and creates each browser's temporary
    profile under its TMPDIR; there is no parameter for either, hence the brief edit.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError("MiniWoB needs Playwright: pip install playwright (Chromium itself comes "
                           "from `apt-get install chromium`)") from exc
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in ("TMPDIR", TAG_VAR)}
        os.environ["TMPDIR"], os.environ[TAG_VAR] = run_dir, tag
        try:
            return sync_playwright().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:  # already gone with its process: nothing left to close
        pass
