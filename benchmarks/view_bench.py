"""`groupwise view` at scale: file size and headless Chromium open time of a 64 x 8 x 50 run.

    python benchmarks/view_bench.py                      # 64 groups x 8 trajectories x 50 steps
    python benchmarks/view_bench.py --groups 8 --steps 10 --frames   # smaller, with a screenshot per state

A synthetic iteration stands in for a long run: each task group's trajectories walk over a small set
of Sokoban-like states (so they revisit each other's states and GiGPO finds anchor groups), with
observations, responses and token ids the size of the default Sokoban run's. GiGPO scores the
batch as the trainer does, the writer saves it (algos/saved_rollouts.py, timed: the added time of a
saved iteration at this size), and `write_view` builds the page. The page is then opened in Debian's
Chromium through Playwright (as the GUI envs drive it), timing from navigation until the page has
rendered its group list and first group (`body[data-ready]`), and the opening of one more group.
Writes benchmarks/results/view-bench.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/view_bench.py` without installing
    sys.path.insert(0, str(ROOT))

from agents.records import StepRecord, Trajectory  # noqa: E402

MOVES = ["up", "down", "left", "right"]


def _room(state: int, size: int = 6) -> str:
    """A 6x6 room drawn as the text env draws it, the player placed by `state`."""
    cells = [["#" if r in (0, size - 1) or c in (0, size - 1) else "_" for c in range(size)] for r in range(size)]
    r, c = 1 + state // (size - 2) % (size - 2), 1 + state % (size - 2)
    cells[r][c], cells[2][2], cells[1][1] = "P", "X", "O"
    return "\n".join(" ".join(row) for row in cells)


def synthetic_batch(groups: int, group_size: int, steps: int, seed: int = 0, frames: bool = False) -> list[Trajectory]:
    """`groups` x `group_size` trajectories of up to `steps` steps over 16 states per group."""
    rng = np.random.default_rng(seed)
    image = None
    out = []
    for g in range(groups):
        for j in range(group_size):
            traj = Trajectory(traj_id=g * group_size + j, group_id=g, seed=1000 + g,
                              task="Push the box onto the target.")
            state, length = 0, steps  # every trajectory runs to the step limit: the largest page
            won = rng.random() < 0.4
            for t in range(length):
                move = MOVES[int(rng.integers(4))]
                text = (f"Step {t}/{steps}. Boxes on targets: 0/1.\nLegend: # wall, _ floor, O target, X box, "
                        f"P player.\n{_room(state)}\nPlayer at {divmod(state, 4)}. Box at (2, 2). Target at (1, 1).")
                content: object = text
                if frames:  # one small frame per state, as an image env's screenshot
                    image = np.full((48, 48, 3), 40 + 12 * state, dtype=np.uint8)
                    content = [{"type": "image", "image": image}, {"type": "text", "text": text}]
                valid = rng.random() > 0.1
                last = t == length - 1
                traj.steps.append(StepRecord(
                    group_id=g, traj_id=traj.traj_id, turn=t, messages=[{"role": "user", "content": content}],
                    prompt_ids=rng.integers(0, 2000, 160).tolist(), response_ids=rng.integers(0, 2000, 12).tolist(),
                    logprobs=(-rng.random(12)).round(4).tolist(),
                    response=f"<think>the box is left of me; move {move}</think><action>{move}</action>",
                    action=move if valid else None, well_formed=valid, parse_reason="" if valid else "not admissible",
                    valid=valid, reward=(10.0 if won and last else -0.1), anchor=f"g{g}:s{state}",
                    observation=text, done=last))
                state = (state + int(rng.integers(1, 4))) % 16 if valid else state
            traj.won = won
            traj.finish()
            out.append(traj)
    return out


def open_times(page_path: Path, repeats: int = 3) -> dict[str, float]:
    """Median seconds from navigation to the rendered page, and to one more opened group."""
    from playwright.sync_api import sync_playwright

    from envs.webshop.browser import CHROMIUM_ARGS, chromium_path

    load, group = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS))
        try:
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                t0 = time.perf_counter()
                page.goto(page_path.as_uri())
                page.wait_for_selector("body[data-ready='1']", timeout=60_000)
                load.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                page.locator("section.group .ghead").nth(1).click()
                page.wait_for_selector("section.group:nth-of-type(2).open .step")
                group.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    return {"open_s": statistics.median(load), "open_group_s": statistics.median(group)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=64)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--frames", action="store_true", help="give every step a 48x48 screenshot (an image env)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)

    from algos.advantage_rows import score_batch
    from algos.saved_rollouts import save_rollouts
    from algos.train_config import TrainConfig
    from algos.view import write_view

    trajs = synthetic_batch(args.groups, args.group_size, args.steps, frames=args.frames)
    cfg = TrainConfig()
    scored = score_batch(trajs, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = save_rollouts(tmp, 1, trajs, scored, cfg)
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        page = write_view(path, Path(tmp) / "view.html")
        build_s = time.perf_counter() - t0
        result = {"groups": args.groups, "group_size": args.group_size, "max_steps": args.steps,
                  "steps": sum(t.length for t in trajs), "frames": args.frames,
                  "jsonl_mb": round(path.stat().st_size / 2**20, 2), "html_mb": round(page.stat().st_size / 2**20, 2),
                  "save_rollouts_s": round(save_s, 3), "build_view_s": round(build_s, 3),
                  **{k: round(v, 3) for k, v in open_times(page).items()},
                  # the machine's 1-minute load average while measuring: timings scale with it on 2 cores
                  "load_average": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    name = "view-bench" + ("-frames" if args.frames else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(
        f"# groupwise view at {args.groups} groups x {args.group_size} trajectories x {args.steps} steps\n\n"
        f"`python benchmarks/view_bench.py{' --frames' if args.frames else ''}` (synthetic Sokoban-like iteration, "
        f"{result['steps']} steps, GiGPO advantages; {result['cpus']} CPUs at load average "
        f"{result['load_average']}: other jobs shared the machine, so the times are upper bounds).\n\n"
        "| what | value |\n|---|---|\n"
        f"| saved rollouts (JSONL) | {result['jsonl_mb']} MB, written in {result['save_rollouts_s']} s |\n"
        f"| view page (HTML) | {result['html_mb']} MB, built in {result['build_view_s']} s |\n"
        f"| headless Chromium: open until rendered | {result['open_s']} s (median of 3) |\n"
        f"| headless Chromium: open one more group | {result['open_group_s']} s |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
