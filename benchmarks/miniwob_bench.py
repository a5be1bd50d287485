"""Every MiniWoB++ task in Chromium: reset and step time, random-policy success, solver success.

    python benchmarks/miniwob_bench.py                          # every task, 20 episodes each
    python benchmarks/miniwob_bench.py --episodes 8             # fewer episodes (the file says how many)
    python benchmarks/miniwob_bench.py --suite liu2018 --out /tmp/mw   # a suite, elsewhere
    python benchmarks/miniwob_bench.py --resume                 # continue an interrupted run
    python benchmarks/miniwob_bench.py --throughput             # also steps/s with 1 and 4 browsers

Measured in this run, for each task (`miniwob.<task>`, default options: stepped clock, the task's
own time limit, one warm Chromium in this process):
1. reset time (fresh browser context, task page load, episode start) and step time (the action,
   the page time it takes, the page scan and the screenshot), in ms, means over all episodes;
2. a random policy: a uniform choice among the env's admissible actions at each step, seeded per
   task, over episodes with page seeds 0..N-1: success (the task's full score), mean return, mean
   length;
3. the scripted solver where the task has one, on the same page seeds: success.
With --throughput, also the EnvPool throughput of the previous bench: random admissible actions on
click-checkboxes with 1 and 4 browsers (one worker process and one Chromium each), steps per second.
Writes benchmarks/results/miniwob-bench.{md,json} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results"


def play(env: Any, seed: int, choose: Any) -> dict[str, Any]:
    """One episode on page seed `seed`; `choose(info)` gives each action. Times reset and steps."""
    t0 = time.perf_counter()
    _, info = env.reset(seed=seed)
    reset_s = time.perf_counter() - t0
    total, steps, step_s, invalid = 0.0, 0, 0.0, 0
    while True:
        action = choose(info)
        t0 = time.perf_counter()
        _, reward, terminated, truncated, info = env.step(action)
        step_s += time.perf_counter() - t0
        total, steps, invalid = total + reward, steps + 1, invalid + (not info["valid_action"])
        if terminated or truncated:
            break
    return {"won": bool(info["won"]), "return": total, "steps": steps, "invalid": invalid,
            "reset_s": reset_s, "step_s": step_s}


def bench_task(name: str, episodes: int, solver_episodes: int) -> dict[str, Any]:
    from envs.miniwob.env import MiniWoBEnv
    from envs.miniwob.tasks import TASKS

    task = TASKS[name]
    rng = random.Random(zlib.crc32(name.encode()))  # the random policy's stream, fixed per task
    env = MiniWoBEnv(name)
    runs: dict[str, list[dict[str, Any]]] = {"random": [], "solver": []}
    errors: list[str] = []
    try:
        for seed in range(episodes):
            try:
                runs["random"].append(play(env, seed, lambda info: rng.choice(info["admissible_actions"] or ["wait()"])))
            except Exception as exc:  # one broken episode must not end the bench: count it, say why
                errors.append(f"random seed {seed}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        if task.solver is not None:
            for seed in range(solver_episodes):
                try:
                    runs["solver"].append(play(env, seed, lambda info: env.expert_action()))
                except Exception as exc:  # a solver that finds no move fails the episode
                    runs["solver"].append({"won": False, "return": 0.0, "steps": 0, "invalid": 0, "reset_s": 0.0,
                                           "step_s": 0.0})
                    errors.append(f"solver seed {seed}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        env.close()
    played = [r for r in runs["random"] + runs["solver"] if r["steps"]]
    n_steps = sum(r["steps"] for r in played)
    return {
        "group": task.group, "kind": task.kind, "timing": task.timing, "time_limit_s": task.time_limit_ms / 1000,
        "max_steps": env.max_steps, "step_ms_page": env.step_ms,
        "reset_ms": 1000 * sum(r["reset_s"] for r in played) / max(1, len(played)),
        "step_ms": 1000 * sum(r["step_s"] for r in played) / max(1, n_steps),
        "random": _summary(runs["random"]),
        "solver": _summary(runs["solver"]) if task.solver is not None else None,
        "errors": errors,
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    n = max(1, len(runs))
    return {"episodes": len(runs), "success": sum(r["won"] for r in runs) / n,
            "return": sum(r["return"] for r in runs) / n, "steps": sum(r["steps"] for r in runs) / n,
            "invalid_rate": sum(r["invalid"] for r in runs) / max(1, sum(r["steps"] for r in runs))}


def throughput(browsers: int, steps: int, task: str = "click-checkboxes", seed: int = 0) -> dict[str, float]:
    """Random admissible actions on `browsers` envs, each in its own worker with its own Chromium."""
    from envs import EnvPool

    rng = random.Random(seed)
    seeds = iter(range(seed, seed + 100_000))
    t_step, n_steps = 0.0, 0
    with EnvPool(f"miniwob.{task}", num_envs=browsers, num_workers=browsers, timeout=60) as pool:
        _, infos = pool.reset(seeds=[next(seeds) for _ in range(browsers)])  # warm-up: launches Chromium
        while n_steps < steps:
            actions = {i: rng.choice(info["admissible_actions"]) for i, info in enumerate(infos)}
            t0 = time.perf_counter()
            results = pool.step(actions)
            t_step += time.perf_counter() - t0
            n_steps += len(actions)
            for i, r in results.items():
                infos[i] = r.info
            ended = [i for i, r in results.items() if r.terminated or r.truncated]
            if ended:
                for i, info in zip(ended, pool.reset(seeds=[next(seeds) for _ in ended], indices=ended)[1]):
                    infos[i] = info
    return {"browsers": browsers, "steps": n_steps, "steps_per_s": n_steps / t_step}


def main(argv: list[str] | None = None) -> int:
    from envs.miniwob import SUITES, TASK_NAMES, suite

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20, help="random-policy episodes per task (page seeds 0..N-1)")
    parser.add_argument("--solver-episodes", type=int, default=None, help="solver episodes per task (default: --episodes)")
    parser.add_argument("--suite", default=None, help=f"only these tasks: {', '.join(SUITES)} (default: every task)")
    parser.add_argument("--tasks", nargs="+", default=None, help="these tasks instead of a suite")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for miniwob-bench.md and .json")
    parser.add_argument("--resume", action="store_true", help="keep the tasks the JSON already has (same settings)")
    parser.add_argument("--throughput", action="store_true", help="also measure EnvPool steps/s with 1 and 4 browsers")
    args = parser.parse_args(argv)
    if args.episodes < 1 or (args.solver_episodes is not None and args.solver_episodes < 0):
        parser.error("--episodes must be at least 1 and --solver-episodes at least 0")
    try:
        names = list(args.tasks or (suite(args.suite) if args.suite else TASK_NAMES))
    except ValueError as exc:
        parser.error(str(exc))
    unknown = [t for t in names if t not in TASK_NAMES]
    if unknown:
        parser.error(f"unknown tasks {unknown}; `python -m algos.cli envs --tag miniwob` lists them")
    solver_episodes = args.episodes if args.solver_episodes is None else args.solver_episodes
    settings = {"episodes": args.episodes, "solver_episodes": solver_episodes}
    path = args.out / "miniwob-bench.json"
    result: dict[str, Any] = {"settings": settings, "tasks": {}, "bench_seconds": 0.0, "runs": 0}
    if args.resume and path.is_file():
        old = json.loads(path.read_text())
        if old.get("settings") != settings:
            parser.error(f"--resume: {path} was measured with {old.get('settings')}, not {settings}")
        result = old
    result["runs"] += 1
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter() - result["bench_seconds"]
    todo = [t for t in names if t not in result["tasks"]]
    for i, name in enumerate(todo, 1):
        t0 = time.perf_counter()
        result["tasks"][name] = row = bench_task(name, args.episodes, solver_episodes)
        solver = f", solver {row['solver']['success']:.0%}" if row["solver"] else ""
        print(f"[{i}/{len(todo)}] {name}: random {row['random']['success']:.0%}{solver}, reset {row['reset_ms']:.0f} ms, "
              f"step {row['step_ms']:.0f} ms ({time.perf_counter() - t0:.0f} s)", flush=True)
        result["bench_seconds"] = time.perf_counter() - start
        result["machine"] = f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at the end"
        path.write_text(json.dumps(result, indent=1) + "\n")  # after every task: --resume continues here
    if args.throughput:
        result["throughput"] = [throughput(1, 60), throughput(4, 60)]
        result["bench_seconds"] = time.perf_counter() - start
    result["machine"] = f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at the end"
    path.write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "miniwob-bench.md").write_text(report(result))
    print(report(result))
    return 0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def report(r: dict[str, Any]) -> str:
    tasks = r["tasks"]
    s = r["settings"]
    lines = ["# MiniWoB++: every task in Chromium (Debian Chromium via Playwright)", "",
             f"`python benchmarks/miniwob_bench.py --episodes {s['episodes']}"
             + (f" --solver-episodes {s['solver_episodes']}" if s["solver_episodes"] != s["episodes"] else "") + "`: "
             f"{len(tasks)} tasks, {s['episodes']} random-policy episodes per task (page seeds 0-{s['episodes'] - 1}) "
             f"and {s['solver_episodes']} solver episodes on the same seeds where a solver exists. Default env options: "
             "stepped clock (each action takes the task's page step, 1000 ms, or 250 ms on simon-says), the task's "
             "own time limit, screenshots 160x210 (FlightWoB: 375x667). Success = the task's full score (raw reward 1).", "",
             f"Machine: {r.get('machine', '?')}; whole bench {r['bench_seconds'] / 60:.0f} min"
             + (f" over {r['runs']} runs (--resume)" if r.get("runs", 1) > 1 else " in one run") + "."
             + (f" At this rate 20 episodes per task would take about {r['bench_seconds'] / 60 * 20 / s['episodes']:.0f} "
                f"min, over the ~40 min a bench run may take here, hence {s['episodes']}." if s["episodes"] < 20 else ""),
             ""]
    lines += ["## Summary", "", "| tasks | n | reset ms | step ms | random success | random return | solver success |",
              "|---|---|---|---|---|---|---|"]

    def summary_row(label: str, names: list[str]) -> str:
        rows = [tasks[n] for n in names]
        solved = [x["solver"]["success"] for x in rows if x["solver"]]
        return (f"| {label} | {len(rows)} | {_mean([x['reset_ms'] for x in rows]):.0f} | "
                f"{_mean([x['step_ms'] for x in rows]):.0f} | {_mean([x['random']['success'] for x in rows]):.1%} | "
                f"{_mean([x['random']['return'] for x in rows]):+.2f} | "
                + (f"{_mean(solved):.1%} ({len(solved)} tasks)" if solved else "-") + " |")

    lines.append(summary_row("all", list(tasks)))
    for key in ("group", "timing"):
        for value in sorted({x[key] for x in tasks.values()}):
            lines.append(summary_row(f"{key} {value}", [n for n, x in tasks.items() if x[key] == value]))
    never = sorted(n for n, x in tasks.items() if x["random"]["success"] == 0)
    lines += ["", f"The random policy never won {len(never)} of {len(tasks)} tasks; tasks with errors: "
              + (", ".join(f"{n} ({len(x['errors'])})" for n, x in tasks.items() if x["errors"]) or "none") + ".", ""]
    lines += ["## Every task", "",
              "| task | group | kind | timing | limit s | max steps | reset ms | step ms | random success | "
              "random return | random steps | solver success |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(tasks):
        x = tasks[name]
        rnd = x["random"]
        solver = f"{x['solver']['success']:.0%}" if x["solver"] else "-"
        lines.append(f"| {name} | {x['group']} | {x['kind']} | {x['timing']} | {x['time_limit_s']:g} | {x['max_steps']} | "
                     f"{x['reset_ms']:.0f} | {x['step_ms']:.0f} | {rnd['success']:.0%} | {rnd['return']:+.2f} | "
                     f"{rnd['steps']:.1f} | {solver} |")
    errors = [(n, e) for n, x in tasks.items() for e in x["errors"]]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {n}: {e}" for n, e in errors[:50]]
    if r.get("throughput"):
        one, four = r["throughput"]
        lines += ["", "## EnvPool throughput (click-checkboxes, random admissible actions)", "",
                  f"1 browser: {one['steps_per_s']:.1f} steps/s; 4 browsers (4 worker processes): "
                  f"{four['steps_per_s']:.1f} steps/s, {four['steps_per_s'] / one['steps_per_s']:.2f}x."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
