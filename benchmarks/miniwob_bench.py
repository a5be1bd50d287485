"""MiniWoB++ in Chromium: GUI env steps per second and screenshot latency with 1 and 4 browsers.

    python benchmarks/miniwob_bench.py            # 60 steps per setting, 3 expert episodes per task
    python benchmarks/miniwob_bench.py --quick    # 24 steps, 2 episodes

Measured in this run:
1. Env throughput with 1 and 4 browsers: an EnvPool with one env, one worker process and one warm
   Chromium per browser, stepped together with random admissible actions (click-checkboxes: most
   clicks toggle a box and the episode goes on). Reported: steps per second over the batched step
   calls, the mean reset time (fresh context + task page load), and episodes per second including
   resets.
2. Screenshot latency (160x210 task area, PNG capture and decode, ms) with 1 browser, and with 4
   browsers capturing at the same time in their own processes.
3. The scripted solvers: success over a few seeds for click-button, click-link and enter-text
   (the acceptance tasks), and `groupwise rollout --policy random` on click-button.
Writes benchmarks/results/miniwob-bench.{md,json}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results"


def _register() -> None:
    """Register miniwob.<task> ids if envs/__init__.py does not."""
    import envs
    from envs.miniwob.tasks import TASK_NAMES

    for name in TASK_NAMES:
        if f"miniwob.{name}" not in envs.list_envs():
            envs.register(f"miniwob.{name}", "envs.miniwob.env:MiniWoBEnv", task=name)


def throughput(browsers: int, steps: int, task: str = "click-checkboxes", seed: int = 0) -> dict[str, float]:
    """Random admissible actions on `browsers` envs, each in its own worker with its own Chromium."""
    from envs import EnvPool

    rng = random.Random(seed)
    seeds = iter(range(seed, seed + 100_000))
    t_step = t_reset = 0.0
    n_steps = n_resets = episodes = 0
    with EnvPool(f"miniwob.{task}", num_envs=browsers, num_workers=browsers, timeout=60) as pool:
        _, infos = pool.reset(seeds=[next(seeds) for _ in range(browsers)])  # warm-up: launches Chromium
        start = time.perf_counter()
        while n_steps < steps:
            actions = {i: rng.choice(info["admissible_actions"]) for i, info in enumerate(infos)}
            t0 = time.perf_counter()
            results = pool.step(actions)
            t_step += time.perf_counter() - t0
            n_steps += len(actions)
            ended = [i for i, r in results.items() if r.terminated or r.truncated]
            for i, r in results.items():
                infos[i] = r.info
            if ended:
                episodes += len(ended)
                t0 = time.perf_counter()
                _, fresh = pool.reset(seeds=[next(seeds) for _ in ended], indices=ended)
                t_reset += time.perf_counter() - t0
                n_resets += 1
                for i, info in zip(ended, fresh):
                    infos[i] = info
        wall = time.perf_counter() - start
        shots = pool.call("time_screenshots")
    return {
        "browsers": browsers, "steps": n_steps, "steps_per_s": n_steps / t_step,
        "step_ms": 1000 * t_step / max(1, n_steps) * browsers,
        "reset_ms": 1000 * t_reset / max(1, n_resets), "episodes": episodes,
        "episodes_per_s": episodes / wall, "screenshot_ms": sum(shots) / len(shots),
    }


def expert_success(tasks: list[str], episodes: int) -> dict[str, float]:
    from envs.miniwob.env import MiniWoBEnv

    out = {}
    for task in tasks:
        env = MiniWoBEnv(task)
        wins = 0
        for seed in range(episodes):
            env.reset(seed=seed)
            while True:
                _, _, terminated, truncated, info = env.step(env.expert_action())
                if terminated or truncated:
                    break
            wins += info["won"]
        env.close()
        out[task] = wins / episodes
    return out


def random_rollout(episodes: int) -> dict[str, float]:
    from algos.cli import main as cli

    buf = io.StringIO()
    with redirect_stdout(buf):
        cli(["rollout", "--env", "miniwob.click-button", "--policy", "random", "--episodes", str(episodes),
             "--workers", "2"])
    text = buf.getvalue()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--steps", type=int, default=None, help="steps per browser setting")
    parser.add_argument("--episodes", type=int, default=None, help="expert episodes per task")
    args = parser.parse_args(argv)
    steps = args.steps or (24 if args.quick else 60)
    episodes = args.episodes or (2 if args.quick else 3)
    _register()
    t0 = time.perf_counter()
    runs = [throughput(1, steps), throughput(4, steps)]
    expert = expert_success(["click-button", "click-link", "enter-text"], episodes)
    rand = random_rollout(10)
    result = {
        "machine": f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at the end",
        "throughput": runs, "expert_success": expert,
        "random_click_button": {k: rand[k] for k in ("success", "return", "steps", "invalid_rate", "episodes")},
        "bench_seconds": time.perf_counter() - t0,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "miniwob-bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "miniwob-bench.md").write_text(report(result))
    print(report(result))
    return 0


def report(r: dict) -> str:
    lines = ["# MiniWoB++ benchmark (Debian Chromium via Playwright)", "",
             f"Machine: {r['machine']}. Whole bench: {r['bench_seconds']:.0f} s.", "",
             "| browsers | steps | steps/s | step ms (per env) | reset ms | episodes/s | screenshot ms |",
             "|---|---|---|---|---|---|---|"]
    for t in r["throughput"]:
        lines.append(f"| {t['browsers']} | {t['steps']} | {t['steps_per_s']:.1f} | {t['step_ms']:.0f} | "
                     f"{t['reset_ms']:.0f} | {t['episodes_per_s']:.2f} | {t['screenshot_ms']:.1f} |")
    one, four = r["throughput"]
    lines += ["", f"4 browsers vs 1: {four['steps_per_s'] / one['steps_per_s']:.2f}x steps/s; screenshot "
              f"latency {four['screenshot_ms'] / one['screenshot_ms']:.2f}x (4 captures at once).", "",
              "Scripted solver success: " + ", ".join(f"{k} {v:.0%}" for k, v in r["expert_success"].items()),
              "", "Random policy on click-button (`groupwise rollout --policy random --episodes 10`): "
              + ", ".join(f"{k} {v:.3g}" for k, v in r["random_click_button"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
