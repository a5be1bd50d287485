"""Sokoban env steps per second: a plain in-process loop versus EnvPool with 0, 1, 2 and 8 workers.

    python benchmarks/pool_bench.py            # 64 envs, 300 rounds per configuration
    python benchmarks/pool_bench.py --quick    # a few seconds in all
    python benchmarks/pool_bench.py --obs-mode both   # observations carry an RGB image

Every configuration plays the same thing: `--envs` Sokoban envs, each round steps every env once
with a uniformly random action among the admissible ones and resets the envs whose episode ended
(the resets are part of the timed work: Sokoban generates and solves a level on reset). Results are
steps per second and the ratio to the in-process loop; "startup" is the time to build the pool
(start the workers and build their envs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/pool_bench.py` without installing
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from envs import EnvPool  # noqa: E402

ENV_ID = "sokoban"


def bench_loop(num_envs: int, rounds: int, env_kwargs: dict[str, Any]) -> float:
    """Steps per second of a plain Python loop over envs built in this process."""
    rng = np.random.default_rng(0)
    pool = [envs.make(ENV_ID, **env_kwargs) for _ in range(num_envs)]
    actions = [env.reset(seed=i)[1]["admissible_actions"] for i, env in enumerate(pool)]
    next_seed = num_envs
    start = time.perf_counter()
    for _ in range(rounds):
        for i, env in enumerate(pool):
            _, _, terminated, truncated, info = env.step(actions[i][rng.integers(len(actions[i]))])
            if terminated or truncated:
                actions[i] = env.reset(seed=next_seed)[1]["admissible_actions"]
                next_seed += 1
    return num_envs * rounds / (time.perf_counter() - start)


def bench_pool(num_envs: int, rounds: int, env_kwargs: dict[str, Any], workers: int) -> tuple[float, float]:
    """(steps per second, startup seconds) of EnvPool with `workers` worker processes."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with EnvPool(ENV_ID, num_envs=num_envs, num_workers=workers, env_kwargs=env_kwargs) as pool:
        startup = time.perf_counter() - start
        _, infos = pool.reset(seeds=list(range(num_envs)))
        actions = [info["admissible_actions"] for info in infos]
        next_seed = num_envs
        start = time.perf_counter()
        for _ in range(rounds):
            results = pool.step({i: a[rng.integers(len(a))] for i, a in enumerate(actions)})
            done = [i for i, r in results.items() if r.terminated or r.truncated]
            if done:
                seeds = list(range(next_seed, next_seed + len(done)))
                next_seed += len(done)
                _, infos = pool.reset(seeds=seeds, indices=done)
                for i, info in zip(done, infos):
                    actions[i] = info["admissible_actions"]
        elapsed = time.perf_counter() - start
    return num_envs * rounds / elapsed, startup


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=64, help="number of envs (default 64)")
    parser.add_argument("--rounds", type=int, default=300, help="steps per env per configuration")
    parser.add_argument("--workers", default="1,2,8", help="comma-separated worker counts")
    parser.add_argument("--obs-mode", default="text", choices=["text", "image", "both"])
    parser.add_argument("--quick", action="store_true", help="a short run (30 rounds)")
    args = parser.parse_args(argv)
    rounds = 30 if args.quick else args.rounds
    env_kwargs = {"obs_mode": args.obs_mode}
    worker_counts = [int(w) for w in args.workers.split(",")]

    # Start multiprocessing's fork server once, so the first pool's startup is comparable.
    t0 = time.perf_counter()
    EnvPool(ENV_ID, num_envs=1, num_workers=1, env_kwargs=env_kwargs).close()
    warmup = time.perf_counter() - t0

    print(f"EnvPool benchmark: {args.envs} x {ENV_ID} (obs_mode={args.obs_mode}), {rounds} rounds, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"first pool (starts the fork server, 1 worker): {warmup:.2f} s")
    rows = [("in-process loop", bench_loop(args.envs, rounds, env_kwargs), None)]
    for workers in [0, *worker_counts]:
        label = f"EnvPool {workers} worker{'s' * (workers != 1)}" + (" (in-process)" if workers == 0 else "")
        rate, startup = bench_pool(args.envs, rounds, env_kwargs, workers)
        rows.append((label, rate, startup))
    base = rows[0][1]
    print(f"{'configuration':32s} {'steps/s':>10s} {'ratio':>7s} {'startup':>9s}")
    for label, rate, startup in rows:
        start = "-" if startup is None else f"{startup:.2f} s"
        print(f"{label:32s} {rate:10.0f} {rate / base:6.2f}x {start:>9s}")


if __name__ == "__main__":
    main()
