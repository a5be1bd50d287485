"""MiniWoB++ in Debian's Chromium: the env contract, the scripted solvers, the random-policy rollout,
and that no Chromium outlives its owner (closed, crashed, or SIGKILLed worker)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import numpy as np
import pytest

pytest.importorskip("playwright")
if not (shutil.which("chromium") or os.environ.get("GROUPWISE_CHROMIUM")):
    pytest.skip("needs Debian's Chromium (apt-get install chromium)", allow_module_level=True)

import envs  # noqa: E402
from envs.miniwob.actions import ActionError, parse_action  # noqa: E402
from envs.miniwob.reaper import tagged_pids  # noqa: E402
from envs.miniwob.tasks import SOLVED_TASKS, TASK_NAMES, TASKS, get_task  # noqa: E402

try:
    from envs.miniwob.env import MiniWoBEnv, html_dir  # noqa: E402

    html_dir()
except RuntimeError as exc:  # the miniwob package (task pages) is not installed
    pytest.skip(str(exc), allow_module_level=True)


def _register() -> None:
    """Register miniwob.<task> here if envs/__init__.py does not (yet)."""
    for name in TASK_NAMES:
        if f"miniwob.{name}" not in envs.list_envs():
            envs.register(f"miniwob.{name}", "envs.miniwob.env:MiniWoBEnv", task=name,
                          description=f"MiniWoB++ {name} in Chromium")


_register()


def _wait_gone(tag: str, run_dir: str, seconds: float = 10.0) -> list[int]:
    end = time.monotonic() + seconds
    while (left := tagged_pids(tag, run_dir)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def _play_expert(env: MiniWoBEnv, seed: int) -> tuple[float, dict]:
    env.reset(seed=seed)
    total, info = 0.0, {}
    for _ in range(env.max_steps):
        _, reward, terminated, truncated, info = env.step(env.expert_action())
        total += reward
        assert info["valid_action"], info["feedback"]
        if terminated or truncated:
            break
    return total, info


# ---------------------------------------------------------------- no browser needed


def test_task_list_spans_kinds_and_unknown_task_lists_valid_ones():
    assert len(SOLVED_TASKS) >= 20
    assert {TASKS[t].kind for t in SOLVED_TASKS} >= {"click", "type", "form", "multi-step", "scroll"}
    with pytest.raises(ValueError, match="click-button") as err:
        get_task("click-buton")
    assert "Registered tasks" in str(err.value)


def test_action_parser_reads_every_form_and_explains_bad_ones():
    assert parse_action("click(12, 30.5)").kind == "click_xy"
    a = parse_action('click("say \\"hi\\"")')
    assert (a.kind, a.text) == ("click_text", 'say "hi"')
    assert parse_action("type('Kasie')").text == "Kasie"
    assert parse_action('press("Control+a")').text == "Control+a"
    assert parse_action("scroll(down)").direction == "down"
    s = parse_action('scroll(40, 90, "up")')
    assert (s.at_point, s.x, s.direction) == (True, 40.0, "up")
    for bad in ("click", "click(1)", "type(Kasie)", "jump()", 'press("")', "scroll(sideways)"):
        with pytest.raises(ActionError, match="valid forms"):
            parse_action(bad)


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def env():
    e = envs.make("miniwob.click-button")
    yield e
    e.close()


def test_reset_gives_screenshot_utterance_and_seeded_page(env):
    obs, info = env.reset(seed=3)
    (image,) = obs["images"]
    assert image.dtype == np.uint8 and image.shape == (210, 160, 3)
    assert env.observation_space.contains(obs)
    assert obs["text"].startswith('Task: Click on the "') and info["task"].startswith("click-button")
    assert info["admissible_actions"] and not info["won"]
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    assert again["anchor"] == obs["anchor"] and np.array_equal(again["images"][0], image)
    assert other["anchor"] != obs["anchor"]


def test_malformed_and_impossible_actions_are_invalid_and_the_episode_goes_on(env):
    env.reset(seed=1)
    for action, hint in [("click(", "valid forms"), ('click("no such button")', "visible texts"),
                         ('type("x")', "click one first"), ('press("NoSuchKey")', "unknown key"),
                         ("click(500, 5)", "outside")]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert not info["valid_action"] and hint in info["feedback"] and hint in obs["text"]
        assert reward == 0 and not terminated
    assert info["admissible_actions"]


def test_scaled_screenshots_and_accessibility_text():
    e = MiniWoBEnv("login-user", scale=2.0, accessibility=True)
    try:
        obs, info = e.reset(seed=0)
        assert obs["images"][0].shape == (420, 320, 3)
        assert "Login" in obs["text"] and "textbox" in obs["text"]
        _, _, _, _, info = e.step(e.expert_action())  # clicks by text or by scaled pixel
        assert info["valid_action"]
    finally:
        e.close()


@pytest.mark.parametrize("task", ["click-button", "click-link", "enter-text"])
def test_scripted_solver_reading_the_page_solves(task):
    e = envs.make(f"miniwob.{task}")
    try:
        for seed in (0, 1):
            total, info = _play_expert(e, seed)
            assert info["won"] and total == 1.0, info
    finally:
        e.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", [t for t in SOLVED_TASKS if t not in ("click-button", "click-link", "enter-text")])
def test_every_solved_task_has_a_working_solver(task):
    e = MiniWoBEnv(task)
    try:
        total, info = _play_expert(e, seed=7)
        assert info["won"] and total == 1.0, (task, info)
    finally:
        e.close()


def test_random_policy_rollout_writes_trajectories(tmp_path):
    from algos.cli import main
    from agents.records import read_jsonl

    out = tmp_path / "traj.jsonl"
    assert main(["rollout", "--env", "miniwob.click-button", "--policy", "random", "--episodes", "4",
                 "--workers", "1", "--out", str(out)]) == 0
    trajs = read_jsonl(out)
    assert len(trajs) == 4 and all(t.steps and t.error is None for t in trajs)
    step = trajs[0].steps[0]
    assert step.anchor.split("|")[-1].startswith("img:") and step.action.startswith("click(")
    frames = [p["image"] for p in step.messages[0]["content"] if p.get("type") == "image"]
    assert len(frames) == 1 and frames[0].shape == (210, 160, 3)  # the screenshot is in the file
    assert {t.steps[-1].reward for t in trajs} <= {1.0, -1.0, 0.0}
    json.loads(out.read_text().splitlines()[0])


def test_network_other_than_file_is_blocked(env):
    env.reset(seed=0)
    failures = []
    env._page.on("requestfailed", lambda r: failures.append(r.failure))
    env._page.evaluate("() => fetch('http://example.com/x', {mode: 'no-cors'}).catch(() => null)")
    env._page.wait_for_timeout(200)
    assert failures and "BLOCKED_BY_CLIENT" in failures[0]


def test_reset_recovers_from_a_crashed_browser():
    from envs.miniwob.browser import shared_pool

    e = MiniWoBEnv("click-test")
    try:
        e.reset(seed=0)
        pool = shared_pool()
        launches = pool.launches
        for pid in tagged_pids(pool.tag):  # crash every Chromium process (not the driver)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"chrom" in f.read().split(b"\0")[0]:
                    os.kill(pid, signal.SIGKILL)
        total, info = _play_expert(e, seed=1)
        assert info["won"] and pool.launches == launches + 1
    finally:
        e.close()


def test_killing_a_worker_leaves_no_chromium():
    with envs.EnvPool("miniwob.click-button", num_envs=1, num_workers=1) as pool:
        pool.reset(seeds=[0])
        tag, run_dir = pool.call("browser_tag")[0], pool.call("browser_run_dir")[0]
        alive = tagged_pids(tag, run_dir)
        assert any(b"chrom" in open(f"/proc/{p}/cmdline", "rb").read() for p in alive)
        assert any(run_dir.encode() in open(f"/proc/{p}/cmdline", "rb").read() for p in alive)
        os.kill(pool.worker_pids[0], signal.SIGKILL)
        assert _wait_gone(tag, run_dir) == []
        end = time.monotonic() + 5  # the reaper removes the profile dir after the last kill
        while os.path.exists(run_dir) and time.monotonic() < end:
            time.sleep(0.1)
        assert not os.path.exists(run_dir)


def test_closing_the_pool_leaves_no_chromium():
    from envs.miniwob.browser import BrowserPool, shared_pool

    shared_pool().close()  # Playwright's sync API runs one driver per thread at a time
    pool = BrowserPool(size=2)
    pool.new_context(500, 320).new_page()
    pool.new_context(500, 320).new_page()
    assert pool.launches == 2 and tagged_pids(pool.tag, pool.run_dir)
    pool.close()
    assert _wait_gone(pool.tag, pool.run_dir) == []
