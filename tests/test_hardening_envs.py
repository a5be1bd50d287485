"""Every registered env, and every env the README defines, against hostile input and Gymnasium's checker.

- Any `str` is an action: control characters, lone surrogates, a megabyte. The env answers with an
  observation in its observation space (never an exception, never a megabyte echoed back) and
  `valid_action=False` when it cannot act on the text.
- `gymnasium.utils.env_checker.check_env` passes through `gymnasium.make("groupwise/<id>")`, which
  also builds the env once per render mode it advertises.

Envs that need Chromium (MiniWoB; WebShop's browser mode is not the default) are skipped without it.
"""

from __future__ import annotations

import math
import re
import shutil
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

# jericho warns that it does not know TextWorld's games; TextWorld supplies what it lacks
pytestmark = pytest.mark.filterwarnings("ignore::Warning:jericho")

README = (Path(__file__).parent.parent / "README.md").read_text()
_before = set(envs.list_envs())
_readme_namespace: dict = {}
try:
    for _block in re.findall(r"```python\n(.*?)```", README, re.S):
        exec(compile(_block, "README.md", "exec"), _readme_namespace)
    README_ERROR = ""
except Exception as _exc:  # test_readme.py reports a broken example; here it only costs its envs
    README_ERROR = f"{type(_exc).__name__}: {_exc}"
README_ENVS = sorted(set(envs.list_envs()) - _before)

HAS_CHROMIUM = bool(shutil.which("chromium"))
# The action parser of MiniWoB is the same for every task: two tasks stand for all of them and
# miniwob-suite (one with a text field, for type(...)), so that a run with Chromium stays short.
MINIWOB_SAMPLE = ("miniwob.click-button", "miniwob.enter-text")
ENV_IDS = [i for i in envs.list_envs() if not i.startswith("miniwob") or i in MINIWOB_SAMPLE]
#: Small options for envs whose defaults build a lot (the behaviour under test does not depend on them).
OPTIONS = {"webshop": {"num_products": 100, "num_goals": 60, "eval_goals": 10},
           "textworld": {"settings": {"level": 1}}}
#: Envs where any non-empty text is an answer (a wrong one), so it is a valid action.
FREE_FORM = {"vision-qa"}

#: Text no env can act on (issue 19, item 2): lone surrogates, control characters, a megabyte.
JUNK = {
    "lone surrogate": "\udcff",
    "NUL": "\x00",
    "escape sequence": "\x1b[2J",
    "1 MB": "x" * 1_000_000,
    "search[surrogate]": "search[\udcff]",
    "click[surrogate]": "click[\udcff]",
    "surrogates and NUL": "\ud800\x00\udfff",
    "5000 digits": "9" * 5000,
    "type(surrogate)": 'type("\udcff")',
    "click(surrogate)": 'click("\udcff")',
    "type(100k)": 'type("' + "x" * 100_000 + '")',
    "superscript two": "\u00b2",
}
#: Known failures in envs this change does not own (envs/vision_qa): (env id, case) -> reason.
KNOWN: dict = {}  # (env id, case) -> why it is expected to fail, for cases not fixed yet


def _needs_chromium(env_id: str) -> bool:
    return env_id.startswith("miniwob")


class _Running:
    """One env per id for the module (building some takes seconds), reset only when its episode
    ended (the README's coin collector compiles a game on every reset); closed at the end."""

    def __init__(self) -> None:
        self.envs: dict[str, object] = {}
        self.running: set[str] = set()

    def step(self, env_id: str, action: str):
        if _needs_chromium(env_id) and not HAS_CHROMIUM:
            pytest.skip("needs Debian's Chromium (apt-get install chromium)")
        if env_id not in self.envs:
            self.envs[env_id] = envs.make(env_id, **OPTIONS.get(env_id, {}))
        env = self.envs[env_id]
        if env_id not in self.running:
            env.reset(seed=0)
        self.running.discard(env_id)
        result = env.step(action)
        if not (result[2] or result[3]):
            self.running.add(env_id)
        return env, result

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


@pytest.fixture(scope="module")
def running():
    r = _Running()
    yield r
    r.close()


def test_readme_examples_register_their_envs():
    assert not README_ERROR, README_ERROR
    assert {"guess-number", "multiply", "coin-collector"} <= set(README_ENVS)


@pytest.mark.parametrize("case", list(JUNK))
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_any_text_is_an_observation_never_an_exception(running, env_id, case):
    if (env_id, case) in KNOWN:
        pytest.xfail(KNOWN[(env_id, case)])
    start = time.monotonic()
    env, (obs, reward, terminated, truncated, info) = running.step(env_id, JUNK[case])
    elapsed = time.monotonic() - start
    assert env.observation_space.contains(obs), f"{case}: obs not in the observation space (text of {len(obs['text'])})"
    assert isinstance(info["valid_action"], bool) and isinstance(info["won"], bool)
    assert isinstance(reward, float) and math.isfinite(reward) and not info["won"]
    if env_id not in FREE_FORM:
        assert info["valid_action"] is False, f"{env_id} took {case!r} as a valid action"
    assert elapsed < 30, f"{env_id} took {elapsed:.0f} s over {case!r}"


@pytest.mark.parametrize("env_id", ENV_IDS)  # the README's envs are registered by now
def test_gymnasium_env_checker_passes(env_id):
    if _needs_chromium(env_id) and not HAS_CHROMIUM:
        pytest.skip("needs Debian's Chromium (apt-get install chromium)")
    env = gym.make(f"groupwise/{env_id}", **OPTIONS.get(env_id, {}))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env)  # with the render check: every advertised mode is built and rendered
    finally:
        env.close()
    # a warning about what render returned means an advertised mode that does not render
    bad = [str(w.message) for w in caught if "render" in str(w.message).lower() and "fps" not in str(w.message)]
    assert not bad, bad
    for mode in env.unwrapped.metadata.get("render_modes", []):
        rendered = gym.make(f"groupwise/{env_id}", render_mode=mode, **OPTIONS.get(env_id, {}))
        try:
            rendered.reset(seed=0)
            frame = rendered.render()
            assert isinstance(frame, str if mode == "ansi" else np.ndarray), (mode, type(frame))
        finally:
            rendered.close()


def test_render_mode_an_env_does_not_render_is_refused_with_its_modes():
    # the README's GuessNumber takes no render_mode: None is dropped, anything else is named
    assert envs.make("guess-number", render_mode=None).reset(seed=0)[0]["text"] == "Make a guess."
    with pytest.raises(ValueError, match="'guess-number' does not render in mode 'rgb_array'.*none"):
        envs.make("guess-number", render_mode="rgb_array")
    with pytest.raises(ValueError, match="'search' does not render in mode 'ansi'"):
        envs.make("search", render_mode="ansi")
    assert envs.AgentEnv.metadata["render_modes"] == []  # advertise only what an env renders


# ---------------------------------------------------------------- MiniWoB's type(...) cap, no browser


class _FakeKeyboard:
    def __init__(self) -> None:
        self.typed: list[str] = []

    def type(self, text: str) -> None:
        time.sleep(len(text) * 1e-4)  # Playwright types key by key
        self.typed.append(text)


def test_miniwob_type_caps_the_text_in_the_env_itself(monkeypatch):
    """type("x" * 100000) called on the env directly (no rollout parser in front) is an invalid
    action with the reason, at once, and nothing is typed."""
    pytest.importorskip("playwright")
    from envs.miniwob import env as miniwob_env
    from envs.miniwob.actions import MAX_ACTION_CHARS, ActionError, parse_action
    from envs.miniwob.page import PageState

    try:
        env = miniwob_env.MiniWoBEnv("enter-text")
    except RuntimeError as exc:  # the miniwob package (task pages) is not installed
        pytest.skip(str(exc))
    keyboard = _FakeKeyboard()
    clock = type("Clock", (), {"run_for": lambda self, ms: None})()  # the stepped page clock: nothing to run
    page = type("Page", (), {"keyboard": keyboard, "clock": clock})()
    state = PageState(utterance='Enter "Kasie" into the text field and press Submit.', done=False, reward=0.0,
                      raw_reward=0.0, reason="", elements=[], editable_focused=True)
    monkeypatch.setattr(miniwob_env, "read_state", lambda page, **options: state)
    monkeypatch.setattr(env, "_screenshot", lambda: np.zeros((210, 160, 3), np.uint8))
    env._page, env._state, env._over = page, state, False

    start = time.monotonic()
    obs, reward, terminated, truncated, info = env.step('type("' + "x" * 100_000 + '")')
    assert time.monotonic() - start < 5 and keyboard.typed == []
    assert not info["valid_action"] and "at most" in info["feedback"] and env.observation_space.contains(obs)

    obs, _, _, _, info = env.step('type("' + "x" * (env.max_type_chars + 1) + '")')
    assert not info["valid_action"] and f"at most {env.max_type_chars}" in info["feedback"] and keyboard.typed == []
    obs, _, _, _, info = env.step('type("Kasie")')
    assert info["valid_action"] and keyboard.typed == ["Kasie"]
    for junk in ("\udcff", 'type("\udcff")', 'click("\udcff")', "\x1b[2J"):
        _, _, _, _, info = env.step(junk)
        assert not info["valid_action"] and keyboard.typed == ["Kasie"]
        assert info["feedback"].isprintable() and "valid forms" in info["feedback"]
    assert "surrogate" in env.step('type("\udcff")')[4]["feedback"]

    with pytest.raises(ActionError, match=f"at most {MAX_ACTION_CHARS}"):
        parse_action("click(" + "1" * MAX_ACTION_CHARS + ")")
    with pytest.raises(ValueError, match="max_type_chars"):
        miniwob_env.MiniWoBEnv("enter-text", max_type_chars=0)


def test_cli_names_an_env_that_cannot_be_built_without_a_traceback(capsys):
    from algos.cli import main

    with pytest.raises(SystemExit, match="could not build env 'sokoban'.*unknown option"):
        main(["rollout", "--env", "sokoban", "--env-kw", "nope=1", "--episodes", "1", "--workers", "0"])
    with pytest.raises(SystemExit, match="game_file .* does not exist"):
        main(["eval", "--env", "textworld", "--policy", "expert", "--env-kw", "game_file=/nonexistent/g.z8",
              "--episodes", "1", "--workers", "0"])
