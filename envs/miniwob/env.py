"""MiniWoB++ in Chromium: the task pages shipped in the `miniwob` package, played with a mouse and keyboard.

Each episode opens the task page in a fresh browser context (see `browser.py`), seeds the page's
random generator (`Math.seedrandom`) so a seed always gives the same task, and starts the task as
MiniWoB's own `core.startEpisodeReal()` does. The reward is the task's own score read from its
globals: `WOB_RAW_REWARD_GLOBAL` (in [-1, 1]) by default, which is what the package's
`get_raw_reward` returns; `reward="env"` gives `WOB_REWARD_GLOBAL`, the package's default, which
scales success by the time left.

Time. MiniWoB pages run on the browser's clock: every task has a time limit (10 to 30 s, read
from the page), and some animate or run in real time (catalog.py's `timing`). A model thinks for
seconds between actions, so on the wall clock its latency would decide outcomes and a seed would
not give the same episode twice. `clock="stepped"` (the default) therefore gives the page a
virtual clock (Playwright's clock: Date, timers and animation frames): it starts at a fixed date
and stands still while the agent thinks, and every action, `wait()` included, is followed by
`step_ms` of page time, which runs the page's timers, animations and time limit. A task with a
10 s limit thus allows 10 actions at the default 1000 ms, and an episode depends only on the seed
and the actions. `clock="real"` runs the page on the wall clock, as the package does; the outcome
of animated and real-time tasks then depends on wall time, which `info["wall_time_dependent"]`
says. `time_limit=False` lifts the task's limit; `max_steps` (default: limit / step_ms) bounds
the episode either way.

FlightWoB (`miniwob.flight.<site>`): the wrapper page scores what the airline page in its iframe
submits, reaching into the iframe, which a file:// page may not do. Those pages are served on a
made-up HTTP origin (ORIGIN) by the browser context's request routing, straight from the package's
files: no server and no socket. The screenshot is the iframe's 375x667 area; the query table to
its right is in the text as the task's utterance (JSON, as the package gives it).
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from envs.base import AgentEnv, image_anchor, observation_space
from envs.miniwob.actions import Action, ActionError, parse_action, quote
from envs.miniwob.browser import shared_pool
from envs.miniwob.page import Element, PageState, read_state
from envs.miniwob.suites import suite as suite_tasks
from envs.miniwob.tasks import NoSolverError, Task, get_task

VIEWPORT = (500, 320)  # the miniwob package's window size; the task area is its top-left 160x210
FLIGHT_VIEWPORT = (560, 680)  # the 375x667 iframe and the query table to its right
#: The origin FlightWoB's pages are served on (by request routing; `.invalid` never resolves).
ORIGIN = "http://flightwob.invalid"
#: Wall milliseconds a FlightWoB action gets to start a load in the iframe (a link): loads run on
#: the network, not the page clock; a start takes a few ms, and the step then waits for its end.
_LOAD_START_MS = 100
CLOCKS = ("stepped", "real")
#: Where the stepped clock starts: a fixed date, so pages that print or pick dates (date pickers,
#: flight searches, a terminal's date) show the same thing every time; MiniWoB's dates are in 2016.
CLOCK_START = datetime.datetime(2017, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
#: The stepped clock flows while the page loads (timers that jQuery and the pages set at load must
#: fire); it then jumps here and stops, so every episode starts at the same page time.
_LOAD_ALLOWANCE = datetime.timedelta(minutes=1)
_SETTLE_MS = 50  # page time run after the episode starts: zero-delay timers and first frames
_NO_TIME_LIMIT_MS = 2**31 - 1  # the largest delay setTimeout accepts (larger ones fire at once)
_TYPE_CANDIDATES = 4  # type(...) actions offered to a random policy when a field has the focus
_POINTER_CANDIDATES = 12  # drag(...) / move(...) actions offered to a random policy at most
#: Points (page pixels, below the task's utterance) offered where the target is a point rather than
#: an element (canvas and hover tasks) or where no element can be told apart (tic-tac-toe cells).
_GRID = [(x, y) for y in (70, 110, 150, 190) for x in (20, 60, 100, 140)]
DATA_MODES = ("default", "train", "test")


def html_dir() -> Path:
    """The package's html/ folder (miniwob/ and flight/ pages, and the core/ scripts they share),
    found without importing the package."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MiniWoB needs the task pages of the `miniwob` package: "
                           "pip install --no-deps miniwob==1.1.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "html"
    if not (path / "miniwob").is_dir():
        raise RuntimeError(f"the miniwob package has no task pages at {path / 'miniwob'}; reinstall miniwob==1.1.0")
    return path.resolve()


class MiniWoBEnv(AgentEnv):
    """One MiniWoB++ task (`miniwob.<task>`); observations are a screenshot plus the utterance.

    task: a name from `envs.miniwob.tasks.TASK_NAMES`.
    suite: instead of one task, a suite name (`envs.miniwob.SUITES`) or a list of task names; each
        reset plays task number seed % len(suite) of it (env id `miniwob-suite`).
    scale: screenshot size factor over the 160x210 task area (2.0 gives 320x420).
    accessibility: append the page's accessibility tree (Playwright's aria snapshot) to the text.
    clock: "stepped" (page time advances step_ms per action, deterministic) or "real" (wall clock).
    step_ms: page milliseconds per action (and per wait() on the real clock); default: the
        task's own (catalog.py; 250 for simon-says) or 1000.
    time_limit: enforce the task's own time limit (in page time when stepped); False lifts it.
    max_steps: actions before the episode is truncated (default: time limit / step_ms).
    reward: "raw" (the task's score) or "env" (score scaled by time left, MiniWoB's default).
    data_mode: "default", "train" or "test": the task's data set, for the tasks that have two
        (click-test-transfer, click-checkboxes-transfer, the natural-language email tasks).
    browsers: warm browsers this process keeps (shared by all MiniWoB envs of the process).
    reset_retries: extra attempts, each in a fresh context of a relaunched browser, when a reset fails.
    scroll_px: pixels one scroll action moves.
    max_type_chars: longest text one type("...") may type; longer text is an invalid action (typing
        goes key by key, so 100,000 characters would hold the browser for minutes).
    render_mode: None or "rgb_array"; `render()` returns the screenshot either way.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    instructions = (
        "You control a web browser showing a small task page (the screenshot). Do what the task says. "
        "Actions: click(x, y) clicks pixel (x, y) of the screenshot; click(\"text\") clicks the visible "
        "element with that text; click(x, y, \"Shift\") clicks with a key held; type(\"text\") types into "
        "the focused field; press(\"Enter\") presses a key; scroll(\"down\") or scroll(x, y, \"up\") scrolls; "
        "move(x, y) moves the pointer there; drag(x1, y1, x2, y2) drags; wait() lets the page go on.")

    def __init__(self, task: str | None = "click-button", suite: str | Sequence[str] | None = None,
                 scale: float = 1.0, accessibility: bool = False, clock: str = "stepped",
                 step_ms: int | None = None, time_limit: bool = True, max_steps: int | None = None,
                 reward: str = "raw", data_mode: str = "default", browsers: int = 1, reset_retries: int = 2,
                 scroll_px: int = 100, timeout_ms: int = 10_000, max_type_chars: int = 200,
                 render_mode: str | None = None):
        self._suite = _suite_tasks(task, suite)
        self.task: Task = get_task(self._suite[0])
        if clock not in CLOCKS:
            raise ValueError(f"clock must be 'stepped' (page time advances step_ms per action, deterministic) "
                             f"or 'real' (the wall clock, as the miniwob package runs); got {clock!r}")
        self.clock = clock
        if step_ms is not None and (isinstance(step_ms, bool) or not isinstance(step_ms, int)
                                    or not 1 <= step_ms <= 60_000):
            raise ValueError(f"step_ms must be an integer from 1 to 60000 (page milliseconds per action), "
                             f"or None for the task's own; got {step_ms!r}")
        self._step_ms_option = step_ms
        if not isinstance(time_limit, bool):
            raise ValueError(f"time_limit must be true (the task's own limit) or false (lifted); got {time_limit!r}")
        self.time_limit = time_limit
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer or None (time limit / step_ms); got {max_steps!r}")
        self._max_steps_option = max_steps
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array' (the screenshot); got {render_mode!r}")
        self.render_mode = render_mode
        if isinstance(max_type_chars, bool) or not isinstance(max_type_chars, int) or max_type_chars < 1:
            raise ValueError(f"max_type_chars must be a positive integer, got {max_type_chars!r}")
        self.max_type_chars = max_type_chars
        if reward not in ("raw", "env"):
            raise ValueError(f"reward must be 'raw' (the task's score) or 'env' (time-scaled), got {reward!r}")
        if not 0.25 <= scale <= 8:
            raise ValueError(f"scale must be between 0.25 and 8, got {scale}")
        self.scale = float(scale)
        self.accessibility = accessibility
        self.reward_kind = reward
        if data_mode not in DATA_MODES:
            raise ValueError(f"data_mode must be one of {', '.join(DATA_MODES)} (MiniWoB's set_data_mode); "
                             f"got {data_mode!r}")
        self.data_mode = data_mode
        self.browsers = browsers
        self.reset_retries = reset_retries
        self.scroll_px = scroll_px
        self.timeout_ms = timeout_ms
        self._pages = html_dir()
        self._select(self.task)
        width, height = self.task.area
        self.image_shape = (round(height * self.scale), round(width * self.scale))
        self.observation_space = observation_space(image_shape=self.image_shape)
        self._context: Any = None
        self._page: Any = None
        self._state: PageState | None = None
        self._steps = 0
        self._over = True
        self.time_limit_ms = self.task.time_limit_ms  # the loaded page's own, once an episode runs
        self.reset_failures = 0  # failed reset attempts so far (each retried in a fresh context)

    @classmethod
    def validate_options(cls, **options: Any) -> None:
        """Check option values without a browser (the constructor starts none): a config with a
        bad suite or clock fails before training starts (envs.registry.check_options)."""
        cls(**options)

    def _select(self, task: Task) -> None:
        """Make `task` the one the next episode plays (a suite switches task at each reset)."""
        self.task = task
        self.url = f"{ORIGIN}/{task.page}" if task.served else (self._pages / task.page).as_uri()
        self.step_ms = self._step_ms_option or task.step_ms or 1000
        self.max_steps = self._max_steps_option or math.ceil(task.time_limit_ms / self.step_ms)

    # ---------------------------------------------------------------- gymnasium API

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        page_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        if len(self._suite) > 1:
            self._select(get_task(self._suite[page_seed % len(self._suite)]))
        last: Exception | None = None
        for _ in range(self.reset_retries + 1):
            try:
                self._open_episode(page_seed)
                break
            except Exception as exc:  # a crashed or hung browser: start over in a new one
                last = exc
                self.reset_failures += 1
                browser = self._context.browser if self._context is not None else None
                self._close_context()
                if browser is not None:
                    shared_pool(self.browsers).discard(browser)
        else:
            raise RuntimeError(f"MiniWoB {self.task.name}: reset failed {self.reset_retries + 1} times; "
                               f"last error: {last}") from last
        self._steps, self._over = 0, False
        self._state = self._read()
        return self._observe(""), self._info(valid=True, feedback="")

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        if self._over or self._page is None:
            raise RuntimeError("the MiniWoB episode is over; call reset() before step()")
        self._steps += 1
        if self.clock == "real" and self._page.evaluate("WOB_DONE_GLOBAL"):
            # the wall clock ran out the task's time while the agent thought: a click now would
            # land on MiniWoB's START cover and begin another episode
            valid, feedback = False, "the task's time limit ran out before this action (clock='real')"
        else:
            try:
                valid, feedback = self._perform(parse_action(action))
            except ActionError as exc:
                valid, feedback = False, str(exc)
            if self.clock == "stepped":
                self._page.clock.run_for(self.step_ms)  # the action's share of page time
            if self.task.served:
                self._finish_loads()
        self._state = state = self._read()
        terminated = state.done
        truncated = not terminated and self._steps >= self.max_steps
        self._over = terminated or truncated
        reward = (state.raw_reward if self.reward_kind == "raw" else state.reward) if terminated else 0.0
        return self._observe(feedback), float(reward), terminated, truncated, self._info(valid, feedback)

    def expert_action(self) -> str:
        """The task's scripted solver, reading the current page; NoSolverError (a NotImplementedError
        naming the tasks that have one) where the task has none."""
        if self.task.solver is None:
            raise NoSolverError(self.task.name)
        if self._state is None or self._over:
            raise RuntimeError("no running episode: call reset() first")
        return self.task.solver(self._state, self.scale)

    def render(self) -> np.ndarray:
        """The screenshot of the task area (whatever the render_mode)."""
        return self._screenshot()

    def close(self) -> None:
        self._close_context()

    # ---------------------------------------------------------------- helpers used by tests / benches

    def browser_run_dir(self) -> str:
        """The run directory of this process's browser pool (its Chromium processes mention it)."""
        return shared_pool(self.browsers).run_dir

    def browser_tag(self) -> str:
        return shared_pool(self.browsers).tag

    def time_screenshots(self, n: int = 10) -> float:
        """Mean milliseconds of one screenshot (capture and decode) of the current page."""
        t0 = time.perf_counter()
        for _ in range(n):
            self._screenshot()
        return (time.perf_counter() - t0) * 1000 / n

    # ---------------------------------------------------------------- internals

    def _open_episode(self, seed: int) -> None:
        self._close_context()
        self._context = shared_pool(self.browsers).new_context(*(FLIGHT_VIEWPORT if self.task.served else VIEWPORT))
        if self.task.served:  # after the pool's route that aborts non-file requests, so it comes first
            self._context.route(f"{ORIGIN}/**", self._serve)
        page = self._context.new_page()
        page.set_default_timeout(self.timeout_ms)
        if self.clock == "stepped":
            page.clock.install(time=CLOCK_START)
        page.goto(self.url)
        # window.onload runs core.startEpisode(), which puts up the START cover: the page is ready
        page.wait_for_function("() => typeof core !== 'undefined' && core.cover_div !== null")
        if self.clock == "stepped":
            page.clock.pause_at(CLOCK_START + _LOAD_ALLOWANCE)
        self.time_limit_ms = int(page.evaluate("core.EPISODE_MAX_TIME"))  # as the task's page set it
        page.evaluate("""([seed, limit, mode]) => {
            Math.seedrandom(String(seed));
            core.EPISODE_MAX_TIME = limit;
            WOB_DATA_MODE = mode;
            core.startEpisodeReal();
        }""", [seed, self.time_limit_ms if self.time_limit else _NO_TIME_LIMIT_MS, self.data_mode])
        if self.clock == "stepped":
            page.clock.run_for(_SETTLE_MS)
        page.wait_for_function("() => WOB_TASK_READY !== false")
        self._page = page

    def _finish_loads(self) -> None:
        """Let a load the action started in a frame end (the wrapper scores a navigation away as -1
        when the iframe's load event comes), so the step reads its outcome, not a race."""
        self._page.wait_for_timeout(_LOAD_START_MS)
        for frame in self._page.frames:
            try:
                frame.wait_for_load_state("load", timeout=self.timeout_ms)
            except Exception:  # detached while loading: nothing left to wait for
                pass

    def _serve(self, route: Any) -> None:
        """Answer a request to ORIGIN with the package file at its path (404 outside html/)."""
        path = (self._pages / unquote(urlparse(route.request.url).path).lstrip("/")).resolve()
        if path.is_relative_to(self._pages) and path.is_file():
            route.fulfill(path=str(path))
        else:
            route.fulfill(status=404, body="not in the miniwob package")

    def _close_context(self) -> None:
        if self._context is not None:
            try:
                self._context.close()
            except Exception:  # the browser died with it
                pass
        self._context, self._page, self._state = None, None, None

    def _read(self) -> PageState:
        # under the stepped clock no animation frame comes unless the clock runs: it just did
        return read_state(self._page, settle_frames=0 if self.clock == "stepped" else 2, area=self.task.area)

    def _point(self, x: float, y: float) -> tuple[float, float] | None:
        """Screenshot pixel (x, y) in page pixels, or None when it is outside the screenshot."""
        px, py = x / self.scale, y / self.scale
        width, height = self.task.area
        return (px, py) if 0 <= px < width and 0 <= py < height else None

    def _outside(self, what: str) -> str:
        return f"{what} is outside the {self.image_shape[1]}x{self.image_shape[0]} screenshot"

    def _click(self, x: float, y: float, modifiers: tuple[str, ...]) -> None:
        keyboard = self._page.keyboard
        for key in modifiers:
            keyboard.down(key)
        self._page.mouse.click(x, y)
        for key in reversed(modifiers):
            keyboard.up(key)

    def _perform(self, action: Action) -> tuple[bool, str]:
        """Do `action` in the page; (valid, feedback) where feedback explains an invalid action."""
        page, state = self._page, self._state
        if action.kind in ("click_xy", "move"):
            point = self._point(action.x, action.y)
            if point is None:
                return False, self._outside(f"{action.kind.split('_')[0]}({action.x:g}, {action.y:g})")
            if action.kind == "move":
                page.mouse.move(*point)
            else:
                self._click(*point, action.modifiers)
            return True, ""
        if action.kind == "click_text":
            el = state.find_text(action.text)
            if el is None:
                shown = ", ".join(quote(e.text) for e in state.elements if e.text)[:300]
                return False, (f"no visible element has the text {quote(action.text)}; visible texts: "
                               f"{shown or '(none)'}; or click(x, y) a pixel of the screenshot")
            self._click(el.x, el.y, action.modifiers)
            return True, ""
        if action.kind == "drag":
            start, end = self._point(action.x, action.y), self._point(action.x2, action.y2)
            if start is None or end is None:
                return False, self._outside(f"drag({action.x:g}, {action.y:g}, {action.x2:g}, {action.y2:g})")
            page.mouse.move(*start)
            page.mouse.down()
            page.mouse.move(*end, steps=8)  # intermediate moves, as a hand makes: drag handlers want them
            page.mouse.up()
            return True, ""
        if action.kind == "wait":
            if self.clock == "real":
                page.wait_for_timeout(self.step_ms)
            return True, ""
        if action.kind == "type":
            if len(action.text) > self.max_type_chars:
                return False, (f"type(...) got {len(action.text)} characters; at most {self.max_type_chars} "
                               f"per action (type a long text in parts)")
            if not state.editable_focused:
                return False, "no text field has the focus: click one first, then type(\"...\")"
            page.keyboard.type(action.text)
            return True, ""
        if action.kind == "press":
            try:
                page.keyboard.press(action.text)
            except Exception as exc:  # Playwright rejects unknown key names
                return False, (f"unknown key {quote(action.text)} ({str(exc).splitlines()[0]}); use names "
                               "like \"Enter\", \"Tab\", \"Backspace\", \"ArrowDown\", \"Control+a\"")
            return True, ""
        # scroll: at the given point, else over the first scrollable element, else mid-page
        if action.at_point:
            x, y = action.x / self.scale, action.y / self.scale
        else:
            target = next((e for e in state.elements if e.scroll is not None), None)
            x, y = (target.x, target.y) if target else (self.task.area[0] / 2, self.task.area[1] / 2)
        page.mouse.move(x, y)
        page.mouse.wheel(0, self.scroll_px if action.direction == "down" else -self.scroll_px)
        return True, ""

    def _screenshot(self) -> np.ndarray:
        from PIL import Image

        width, height = self.task.area
        png = self._page.screenshot(type="png", clip={"x": 0, "y": 0, "width": width, "height": height})
        image = Image.open(io.BytesIO(png)).convert("RGB")
        if self.scale != 1.0:
            image = image.resize((self.image_shape[1], self.image_shape[0]), Image.BILINEAR)
        return np.asarray(image)

    def _observe(self, feedback: str) -> dict:
        state = self._state
        image = self._screenshot()
        text = f"Task: {state.utterance}"
        if self.accessibility and not state.done:
            area = (self._page.frame_locator("#wrap").locator("body") if self.task.served
                    else self._page.locator("#area"))
            text += "\nPage:\n" + area.aria_snapshot()
        if feedback:
            text += f"\nLast action was invalid: {feedback}"
        anchor = f"{state.utterance}|{image_anchor(image)}"
        return self.make_obs(text, anchor=anchor, images=(image,))

    def _info(self, valid: bool, feedback: str) -> dict:
        state = self._state
        done = self._over and state.done
        return self.make_info(
            won=done and state.raw_reward >= 1.0, valid_action=valid, task=f"{self.task.name}: {state.utterance}",
            admissible_actions=[] if self._over else self._admissible(state),
            raw_reward=state.raw_reward if done else 0.0, reason=state.reason, feedback=feedback,
            task_name=self.task.name, timing=self.task.timing, clock=self.clock, page_ms=round(state.elapsed_ms),
            time_limit_ms=self.time_limit_ms if self.time_limit else None,
            wall_time_dependent=self.wall_time_dependent)

    @property
    def wall_time_dependent(self) -> bool:
        """Whether an episode's outcome can depend on wall time (how fast the agent acts): only on
        the real clock, for a task that animates or runs in real time, or with a time limit or a
        time-scaled reward."""
        return self.clock == "real" and (self.task.timing != "static" or self.time_limit or self.reward_kind == "env")

    def _admissible(self, state: PageState) -> list[str]:
        """Actions that do something sensible now: clicks on elements, typing, Enter, scrolling, and
        where the task calls for them clicks on a grid of points, drags, pointer moves and wait()."""
        actions: list[str] = []
        for el in state.elements:
            if el.text and len(el.text) <= 40 and state.find_text(el.text) is el:
                actions.append(f"click({quote(el.text)})")
            elif el.tag != "svg" or not el.text:
                actions.append(f"click({round(el.x * self.scale)}, {round(el.y * self.scale)})")
        if state.editable_focused:
            words = _typing_candidates(state.utterance)[:_TYPE_CANDIDATES]
            actions += [f"type({quote(w)})" for w in words] + ['press("Backspace")', 'press("Enter")']
        if any(el.scroll is not None for el in state.elements):
            actions += ['scroll("down")', 'scroll("up")']
        if not state.elements or self.task.kind in ("canvas", "hover"):
            actions += [f"click({round(x * self.scale)}, {round(y * self.scale)})" for x, y in _GRID]
        points = [self._pixel(el) for el in state.elements][:6]
        if self.task.kind == "drag":  # from one element to another: boxes, items, handles, shapes
            actions += [f"drag({a[0]}, {a[1]}, {b[0]}, {b[1]})" for a in points for b in points
                        if a != b][:_POINTER_CANDIDATES]
        if self.task.kind == "hover":
            grid = [(round(x * self.scale), round(y * self.scale)) for x, y in _GRID]
            actions += [f"move({x}, {y})" for x, y in (points + grid)[:_POINTER_CANDIDATES]]
        if self.task.timing != "static":  # letting time pass is a move in its own right here
            actions.append("wait()")
        return list(dict.fromkeys(actions))

    def _pixel(self, el: Element) -> tuple[int, int]:
        return round(el.x * self.scale), round(el.y * self.scale)


def _suite_tasks(task: str | None, suite: str | Sequence[str] | None) -> tuple[str, ...]:
    """The task names an env plays: [task], or the suite's (a suite name or a list of names)."""
    if suite is None:
        if task is None:
            raise ValueError("MiniWoBEnv needs a task (e.g. task='click-button') or a suite (e.g. suite='liu2018')")
        return (task,)
    if task is not None:
        raise ValueError(f"give MiniWoBEnv a task or a suite, not both (task={task!r}, suite={suite!r}); "
                         f"use task=None with a suite")
    names = suite_tasks(suite) if isinstance(suite, str) else tuple(suite)
    if not names:
        raise ValueError("the suite is empty: give a suite name (envs.miniwob.SUITES) or a list of task names")
    areas = {get_task(name).area for name in names}  # an unknown name fails here, with close names
    if len(areas) > 1:
        raise ValueError("a MiniWoB suite plays one screenshot size, but these tasks have "
                         + " and ".join(f"{w}x{h}" for w, h in sorted(areas))
                         + " pages; play the FlightWoB tasks (375x667) in a suite of their own (suite='flight')")
    return names


def _typing_candidates(utterance: str) -> list[str]:
    """Strings worth typing: a JSON utterance's values (FlightWoB's query), else the utterance's
    quoted strings, else its capitalised words."""
    try:
        fields = json.loads(utterance)
    except ValueError:
        fields = None
    if isinstance(fields, dict):
        return list(dict.fromkeys(str(v) for v in fields.values()))
    quoted = re.findall(r'"([^"]+)"', utterance)
    return quoted or re.findall(r"\b[A-Z][a-zA-Z]+\b", utterance)[1:]
