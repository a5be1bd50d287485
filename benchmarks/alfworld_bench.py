"""ALFWorld on generated games: does the expert win every task type, and how fast is the engine?

    python benchmarks/alfworld_bench.py            # 10 games per task type, full timings
    python benchmarks/alfworld_bench.py --quick    # 2 games per task type, fewer steps

Three measurements, each side by side in this one run:
1. `groupwise rollout --env alfworld --policy expert` on 10 generated games of each task type:
   wins and mean steps per type.
2. Latency of the same games on ALFWorld's stock engine (a fresh process, no speedups) and on
   groupwise's engine: load + reset, and step; the ratio is what the speedups buy.
3. Env steps per second through EnvPool with 1 and 2 workers (random admissible commands, a new
   game every 20 steps), for games already verified (cached) and for new seeds, whose reset
   generates the game and checks it with the expert first.
Writes benchmarks/results/alfworld-bench.{md,json}.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results"


def expert_wins(games_per_type: int) -> dict[str, dict[str, float]]:
    """Per task type: the expert's success and mean steps through the `groupwise rollout` command."""
    from algos.cli import main as cli
    from envs.alfworld import TASK_TYPES

    table = {}
    for task_type in TASK_TYPES:
        out = io.StringIO()
        with tempfile.TemporaryDirectory() as trajs, redirect_stdout(out):
            cli(["rollout", "--env", "alfworld", "--policy", "expert", "--episodes", str(games_per_type),
                 "--workers", "2", "--env-kw", f"task_types=[{task_type}]", "--out", f"{trajs}/t.jsonl"])
        text = out.getvalue()
        metrics = json.loads(text[text.index("{"):text.rindex("}") + 1])
        table[task_type] = {"won": metrics["success"] * games_per_type, "games": games_per_type,
                            "steps": metrics["steps"]}
        print(f"  {task_type:32s} won {table[task_type]['won']:.0f}/{games_per_type}, "
              f"{metrics['steps']:.1f} steps", flush=True)
    return table


def _games(n: int) -> list[tuple[dict, dict]]:
    from envs.alfworld import generator
    from envs.alfworld.engine import game_data

    games = []
    for seed in range(n):
        g = generator.sample_game("train", seed)
        games.append((game_data(g.problem, g.sentence), g.traj_data()))
    return games


def engine_latency(stock: bool, n_games: int, steps: int, queue: mp.Queue) -> None:
    """Runs in its own process, so the stock engine is measured without groupwise's speedups."""
    rng = np.random.default_rng(0)
    games = _games(n_games)
    if stock:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs import PddlEnv

        env = AlfredDemangler(PddlEnv(textworld.EnvInfos(won=True, admissible_commands=True)), shuffle=False)
        start_game = lambda game, traj: (env.load(game), env.reset())[1]  # noqa: E731
        step = lambda cmd: env.step(cmd)[0]  # noqa: E731
    else:
        from envs.alfworld.engine import AlfredEngine

        engine = AlfredEngine(expert=False)
        start_game, step = engine.start, engine.step
    start_game(*games[0])  # warm-up: first parse of the domain and grammar
    resets, step_times = [], []
    for game, traj in games:
        t = time.perf_counter()
        state = start_game(game, traj)
        resets.append(time.perf_counter() - t)
        for _ in range(steps):
            commands = state["admissible_commands"]
            t = time.perf_counter()
            state = step(commands[rng.integers(len(commands))])
            step_times.append(time.perf_counter() - t)
    queue.put({"reset_ms": 1e3 * statistics.mean(resets), "step_ms": 1e3 * statistics.mean(step_times)})


def latency(n_games: int, steps: int) -> dict[str, dict[str, float]]:
    ctx = mp.get_context("spawn")
    out = {}
    for name, stock in (("stock ALFWorld engine", True), ("groupwise engine", False)):
        queue = ctx.Queue()
        proc = ctx.Process(target=engine_latency, args=(stock, n_games, steps, queue))
        proc.start()
        out[name] = queue.get()
        proc.join()
        print(f"  {name:22s} load+reset {out[name]['reset_ms']:.0f} ms, step {out[name]['step_ms']:.1f} ms", flush=True)
    return out


def pool_throughput(workers: int, num_envs: int, rounds: int, first_seed: int) -> float:
    """Env steps per second (resets included) with random admissible commands."""
    from envs import EnvPool

    rng = np.random.default_rng(0)
    with EnvPool("alfworld", num_envs=num_envs, num_workers=workers, env_kwargs={"max_steps": 20}) as pool:
        seeds = iter(range(first_seed, first_seed + 10_000))
        _, infos = pool.reset(seeds=[next(seeds) for _ in range(num_envs)])
        actions = [info["admissible_actions"] for info in infos]
        start = time.perf_counter()
        for _ in range(rounds):
            results = pool.step({i: a[rng.integers(len(a))] for i, a in enumerate(actions)})
            for i, r in results.items():
                actions[i] = r.info["admissible_actions"]
            done = [i for i, r in results.items() if r.terminated or r.truncated]
            if done:
                _, infos = pool.reset(seeds=[next(seeds) for _ in done], indices=done)
                for i, info in zip(done, infos):
                    actions[i] = info["admissible_actions"]
        return num_envs * rounds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    games_per_type, n_games, steps, rounds = (2, 4, 5, 20) if args.quick else (10, 12, 20, 60)
    os.environ.setdefault("GROUPWISE_CACHE", tempfile.mkdtemp(prefix="groupwise-alfworld-bench-"))
    print(f"game cache: {os.environ['GROUPWISE_CACHE']}")
    report: dict = {"load_average": os.getloadavg()[0]}

    print(f"1. expert on {games_per_type} generated games per task type (groupwise rollout)")
    report["expert"] = expert_wins(games_per_type)
    print(f"2. engine latency, {n_games} games x {steps} random commands")
    report["latency"] = latency(n_games, steps)
    print("3. EnvPool env steps/s (8 envs, random admissible commands, new game every 20 steps)")
    report["pool"] = {}
    for workers in (1, 2):
        for kind, first_seed in (("cached games", 0), ("new seeds", 100_000 * workers)):
            if kind == "cached games":
                pool_throughput(workers, 8, rounds, first_seed)  # verifies the games into the cache
            sps = pool_throughput(workers, 8, rounds, first_seed)
            report["pool"][f"{workers} worker(s), {kind}"] = sps
            print(f"  {workers} worker(s), {kind:12s}: {sps:.1f} steps/s", flush=True)
    write_report(report)


def write_report(report: dict) -> None:
    lat = report["latency"]
    stock, ours = lat["stock ALFWorld engine"], lat["groupwise engine"]
    lines = ["# ALFWorld on generated games", "", f"Load average at the start: {report['load_average']:.1f} (2 cores).", "",
             "| task type | expert wins | mean steps |", "|---|---|---|"]
    lines += [f"| {t} | {v['won']:.0f}/{v['games']} | {v['steps']:.1f} |" for t, v in report["expert"].items()]
    lines += ["", "| engine | load + reset (ms) | step (ms) |", "|---|---|---|"]
    lines += [f"| {name} | {v['reset_ms']:.0f} | {v['step_ms']:.1f} |" for name, v in lat.items()]
    lines += [f"| ratio (groupwise / stock) | {ours['reset_ms'] / stock['reset_ms']:.2f} | "
              f"{ours['step_ms'] / stock['step_ms']:.2f} |", "", "| EnvPool | env steps/s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["pool"].items()]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "alfworld-bench.md").write_text("\n".join(lines) + "\n")
    (OUT / "alfworld-bench.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
