"""Saved rollouts and `groupwise view`: a small real run's samples, checked in the JSONL and in Chromium."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.records import StepRecord, Trajectory
from algos.advantage_rows import score_batch
from algos.config import load_yaml
from algos.registry import advantage_terms, make_options, run_estimator, step_groups
from algos.saved_rollouts import read_rollouts, rollout_files, rollouts_due, save_rollouts
from algos.steptable import StepTable
from algos.train_config import TrainConfig

# tests/test_train.py's tiny budget, smaller still: two iterations, each evaluated, so each is saved
RUN = ["sft.episodes=8", "sft.epochs=1", "rl.iterations=2", "rl.tasks_per_iter=2", "rl.group_size=3",
       "rl.max_new_tokens=8", "eval.episodes=2", "eval.every=1", "save_every=2", "env.workers=0",
       "tensorboard=false", "progress=false", "env.kwargs={max_steps: 4}"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "groupwise"
    p = subprocess.run([sys.executable, "-m", "algos.cli", "train", f"out_dir={out}", *RUN],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def test_saved_rollouts_hold_what_the_trainer_computed(run):
    files = rollout_files(run)
    assert [f.name for f in files] == ["iter-000001.jsonl", "iter-000002.jsonl"]  # default: at each evaluation
    cfg = load_yaml(TrainConfig, run / "config.yaml")
    for f in files:
        lines = read_rollouts(f)
        assert len(lines) == 2 * 3 and {t["estimator"] for t in lines} == {"gigpo"}
        assert {t["iteration"] for t in lines} == {int(f.stem.split("-")[1])}
        # the same estimator over the saved step records gives the saved advantages
        trajs = [Trajectory.from_json(t) for t in lines]
        scored = score_batch(trajs, cfg)
        steps = [s for t in lines for s in t["steps"]]
        np.testing.assert_allclose([s["advantage"] for s in steps], scored.advantages, rtol=0, atol=1e-12)
        by_state: dict = {}
        for t in lines:
            for s in t["steps"]:
                assert set(s["terms"]) == {"episode", "step"}
                assert s["terms"]["episode"] + s["terms"]["step"] == pytest.approx(s["advantage"], abs=1e-12)
                assert s["clip"] == [cfg.loss.clip_low, cfg.loss.clip_high] and s["trained"] is True
                # an anchor group is a task group's steps from one state (GiGPO's exact grouping)
                by_state.setdefault((t["group_id"], s["anchor"]), set()).add(s["anchor_group"])
        assert all(len(ids) == 1 for ids in by_state.values())
        assert len({next(iter(ids)) for ids in by_state.values()}) == len(by_state)


def test_terms_add_up_and_default_step_groups():
    rng = np.random.default_rng(0)
    n = 40
    table = StepTable(group=np.arange(n) // 10, traj=np.arange(n) // 5, turn=np.arange(n) % 5,
                      reward=rng.normal(size=n), anchor=[f"s{k}" for k in rng.integers(0, 4, n)],
                      valid=rng.random(n) > 0.2)
    opt = make_options("gigpo", step_advantage_w=0.5)
    terms = advantage_terms("gigpo", table, opt)
    np.testing.assert_array_equal(terms["episode"] + terms["step"], run_estimator("gigpo", table, opt)["advantage"])
    assert advantage_terms("grpo", table, make_options("grpo")) == {}
    # without a step_groups hook: equal anchors within a task group
    codes = step_groups("grpo", table, make_options("grpo"))
    pairs = list(zip(table.group.tolist(), table.anchor.tolist()))
    assert all((codes[i] == codes[j]) == (pairs[i] == pairs[j]) for i in range(n) for j in range(n))


def test_save_schedule():
    cfg = TrainConfig()
    cfg.rl.iterations, cfg.eval.every = 7, 3
    assert [d for d in range(1, 8) if rollouts_due(cfg, d)] == [3, 6, 7]  # default: at each evaluation
    cfg.save_rollouts_every = 2
    assert [d for d in range(1, 8) if rollouts_due(cfg, d)] == [2, 4, 6, 7]
    cfg.save_rollouts_every = 0
    assert not any(rollouts_due(cfg, d) for d in range(1, 8))


def _view(*args) -> str:
    """`groupwise view ARGS` in this process: what it printed (the page's path)."""
    from algos.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["view", *map(str, args)]) == 0
    return out.getvalue().strip()


def test_view_refuses_what_it_cannot_show(tmp_path):
    with pytest.raises(SystemExit, match="does not exist; pass a run folder"):
        _view(tmp_path / "missing")
    with pytest.raises(SystemExit, match="holds no saved rollouts .* save_rollouts_every"):
        _view(tmp_path)


def test_frames_are_shown_once_per_group(tmp_path):
    from algos.view import build_page

    frame = "data:image/png;base64,iVBORw0KGgo="
    step = StepRecord(group_id=0, traj_id=0, turn=0, prompt_ids=[1], response_ids=[2], logprobs=[0.0],
                      messages=[{"role": "user", "content": [{"type": "image", "image": frame},
                                                             {"type": "text", "text": "where?"}]}],
                      response="<action>left</action>", action="left", well_formed=True, parse_reason="",
                      valid=True, reward=0.0, anchor="a", observation="a room")
    path = tmp_path / "rollout.jsonl"
    trajs = [Trajectory(traj_id=k, group_id=0, seed=0, steps=[step]) for k in range(3)]
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in trajs))
    page = build_page(path)
    assert page.count(frame) == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", page)


needs_browser = pytest.mark.skipif(
    not (os.environ.get("GROUPWISE_CHROMIUM") or shutil.which("chromium")),
    reason="Chromium is not installed (apt-get install chromium)")


def _batch() -> list[Trajectory]:
    """Two task groups of three trajectories that revisit each other's states (shared anchor groups)."""
    trajs = []
    for g in range(2):
        for j in range(3):
            t = Trajectory(traj_id=g * 3 + j, group_id=g, seed=g)
            for turn, state in enumerate([0, 1 + j % 2, 3, j]):
                t.steps.append(StepRecord(
                    group_id=g, traj_id=t.traj_id, turn=turn, messages=[], prompt_ids=[1], response_ids=[2],
                    logprobs=[0.0], response=f"<action>m{state}</action>", action=f"m{state}", well_formed=True,
                    parse_reason="", valid=True, reward=float(j == 0 and turn == 3), anchor=f"s{state}",
                    observation=f"state {state}"))
            t.won = j == 0
            t.finish()
            trajs.append(t)
    return trajs


def _cards(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('.step')].map(s => ({
        traj: Number(s.dataset.traj), turn: Number(s.dataset.turn), anchor: s.dataset.anchor,
        colour: getComputedStyle(s).borderLeftColor,
        adv: s.querySelector('.adv-total').dataset.value,
        episode: s.querySelector('.adv-episode')?.dataset.value,
        step: s.querySelector('.adv-step')?.dataset.value,
        action: s.querySelector('.action code')?.textContent ?? null}))""")


def _check_page(page, lines: list[dict]) -> int:
    """Open every group of the page's iteration and check each step card against the saved lines:
    anchor group, action, advantage and its terms, and the colours (one per anchor group, distinct
    among a task group's shared ones, grey for a step alone in its group). Returns the shared groups seen."""
    sections = page.locator("section.group")
    assert sections.count() == len({t["group_id"] for t in lines})
    for k in range(sections.count()):  # the first group is open already
        if "open" not in (sections.nth(k).get_attribute("class") or ""):
            sections.nth(k).locator(".ghead").click()
    cards = _cards(page)
    expected = {(t["traj_id"], s["turn"]): (t["group_id"], s) for t in lines for s in t["steps"]}
    assert len(cards) == len(expected)
    colours: dict = {}
    for card in cards:
        group, s = expected[(card["traj"], card["turn"])]
        assert int(card["anchor"]) == s["anchor_group"] and card["action"] == s["action"]
        assert float(card["adv"]) == s["advantage"]
        assert float(card["episode"]) == s["terms"]["episode"] and float(card["step"]) == s["terms"]["step"]
        colours.setdefault((group, s["anchor_group"]), []).append(card["colour"])
    assert all(len(set(c)) == 1 for c in colours.values())
    grey = "rgb(209, 213, 219)"  # .step's border when its anchor group has only this step
    assert all((c[0] == grey) == (len(c) == 1) for c in colours.values())
    for group in {g for g, _ in colours}:
        shared = [c[0] for (g, _), c in colours.items() if g == group and len(c) > 1]
        assert len(set(shared)) == len(shared)
    return sum(len(c) > 1 for c in colours.values())


@needs_browser
def test_the_page_shows_the_saved_values_in_chromium(run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from envs.webshop.browser import CHROMIUM_ARGS, chromium_path

    page_path = Path(_view(run))
    assert page_path == run / "view.html"
    saved = {int(f.stem.split("-")[1]): read_rollouts(f) for f in rollout_files(run)}
    # a batch whose trajectories meet in shared states, so several colours must be told apart
    cfg = TrainConfig()
    trajs = _batch()
    synthetic = Path(_view(save_rollouts(tmp_path, 5, trajs, score_batch(trajs, cfg), cfg)))

    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            outside = []
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url))
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            for iteration, lines in saved.items():  # iterations in order; the page opens on the last
                if page.locator("nav .current").text_content() != str(iteration):
                    page.click(f"nav#iterations a[href='#it={iteration}']")
                page.wait_for_function(f"document.querySelector('nav .current')?.textContent === '{iteration}'")
                _check_page(page, lines)
            # the outcome filter: "successful" leaves only the groups with a won trajectory
            page.select_option("#f-outcome", "won")
            assert page.locator("section.group").count() == len({t["group_id"] for t in lines if t["won"]})
            page.select_option("#f-outcome", "all")
            page.screenshot(path=str(tmp_path / "view.png"))
            assert (tmp_path / "view.png").stat().st_size > 10_000

            page.goto(synthetic.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            assert _check_page(page, read_rollouts(tmp_path / "rollouts" / "iter-000005.jsonl")) >= 6
            assert not outside, f"the page reached outside: {outside}"
        finally:
            browser.close()
