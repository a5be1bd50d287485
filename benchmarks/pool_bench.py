"""Env pool benchmarks: per-step overhead of the pool backends, and Sokoban throughput.

    python benchmarks/pool_bench.py                 # overhead: in-process vs EnvPool vs RayEnvPool
    python benchmarks/pool_bench.py --quick         # the same, shorter (about a minute in all)
    python benchmarks/pool_bench.py --sokoban       # Sokoban steps/s: plain loop vs EnvPool workers
    python benchmarks/pool_bench.py --sokoban --obs-mode both   # observations carry an RGB image

Overhead (the default). Every backend steps the same no-op env (a short text observation, no work)
with the same batch sizes: one `step` call moves every env of the pool once. What is measured is
then what the pool itself costs per step call: messages, pickling and waiting. Backends: EnvPool
in-process (`num_workers=0`, the floor), EnvPool with worker processes, and RayEnvPool with as many
Ray actors on a local Ray instance. "restart" is the `step` call right after one worker or actor
was killed: detecting the death, starting a replacement and replaying its envs. Writes
benchmarks/results/pool-bench.{md,json}; Ray's start-up is printed but not part of any figure.
Without Ray installed, the Ray column is left out.

Sokoban (`--sokoban`). Each round steps every env once with a random admissible action and resets
the envs whose episode ended (resets are timed too: Sokoban generates and solves a level on
reset). Results are steps per second and the ratio to a plain in-process loop; "startup" is the
time to build the pool.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/pool_bench.py` without installing
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from envs import EnvPool  # noqa: E402
from envs.base import AgentEnv, observation_space  # noqa: E402

ENV_ID = "sokoban"
NOOP_ID = "bench-noop"
OUT = ROOT / "benchmarks" / "results"


class NoopEnv(AgentEnv):
    """Does nothing: a fixed short observation, never ends. Isolates the pool's own cost."""

    observation_space = observation_space()

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        return self.make_obs("x" * 64, anchor="noop"), self.make_info()

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        return self.make_obs("x" * 64, anchor="noop"), 0.0, False, False, self.make_info(valid_action=True)


# -- overhead ---------------------------------------------------------------------------------


def time_steps(pool: EnvPool, steps: int, warmup: int = 10) -> list[float]:
    """Milliseconds of each of `steps` calls that step every env of `pool` once."""
    actions = {i: "noop" for i in range(pool.num_envs)}
    for _ in range(warmup):
        pool.step(actions)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        pool.step(actions)
        times.append((time.perf_counter() - start) * 1000)
    return times


def bench_backend(make: Callable[[], EnvPool], steps: int, kill: Callable[[EnvPool], None] | None) -> dict:
    """Start-up, per-step times and (with `kill`) the cost of the step after a worker was killed."""
    start = time.perf_counter()
    pool = make()
    try:
        startup = time.perf_counter() - start
        pool.reset(seeds=list(range(pool.num_envs)))
        ms = time_steps(pool, steps)
        restart = None
        if kill is not None:
            kill(pool)
            start = time.perf_counter()
            results = pool.step({i: "noop" for i in range(pool.num_envs)})
            restart = time.perf_counter() - start
            assert not any(r.info.get("failed") for r in results.values()), "a restart failed an env"
    finally:
        pool.close()
    return {"startup_s": startup, "step_ms_mean": float(np.mean(ms)), "step_ms_p50": float(np.median(ms)),
            "step_ms_p95": float(np.percentile(ms, 95)), "restart_s": restart, "steps": steps}


def _wait_gone(pid: int, within: float = 30.0) -> None:
    """Return once process `pid` has exited (a zombie counts), so the next step meets a dead worker."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} still running {within:g}s after it was killed")


def _kill_worker(pool: EnvPool) -> None:
    pid = pool.worker_pids[0]
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)


def _kill_actor(pool: Any) -> None:
    import ray

    pid = pool.worker_pids[0]
    ray.kill(pool.actors[0])  # returns before the actor is dead
    _wait_gone(pid)


def run_overhead(batches: list[int], workers: int, steps: int) -> dict:
    """Every backend at every batch size; returns the report written to results/pool-bench.*."""
    envs.register(NOOP_ID, NoopEnv)
    has_ray = importlib.util.find_spec("ray") is not None
    report: dict[str, Any] = {"workers": workers, "steps": steps, "cores": os.cpu_count(),
                              "load_average_start": os.getloadavg()[0], "runs": []}
    if has_ray:
        from envs.ray_pool import RayEnvPool, init_ray

        start = time.perf_counter()
        ray = init_ray(num_cpus=workers, log_to_driver=False)
        report["ray_init_s"] = time.perf_counter() - start
        report["ray_version"] = ray.__version__
        print(f"Ray {ray.__version__}: local instance started in {report['ray_init_s']:.1f} s")
    # Start multiprocessing's fork server once, so that EnvPool's start-up figures are comparable.
    EnvPool(NOOP_ID, num_envs=1, num_workers=1).close()
    for batch in batches:
        row: dict[str, Any] = {"batch": batch}
        row["in-process"] = bench_backend(lambda: EnvPool(NOOP_ID, num_envs=batch, num_workers=0), steps, None)
        row["process"] = bench_backend(lambda: EnvPool(NOOP_ID, num_envs=batch, num_workers=workers),
                                       steps, _kill_worker)
        if has_ray:
            row["ray"] = bench_backend(lambda: RayEnvPool(NOOP_ID, num_envs=batch, num_workers=workers),
                                       steps, _kill_actor)
        report["runs"].append(row)
        print_row(row)
    report["load_average_end"] = os.getloadavg()[0]
    if has_ray:
        ray.shutdown()
    return report


def _cell(run: dict | None, key: str, fmt: str) -> str:
    return "-" if run is None or run.get(key) is None else format(run[key], fmt)


def table(report: dict) -> list[str]:
    """Markdown rows: per backend mean/p95 ms per step call, µs per env step, and the ratios."""
    lines = ["| envs per step | backend | ms per step: mean / p95 | µs per env step | vs process pool "
             "| vs in-process | startup (s) | step after a kill (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["runs"]:
        base, proc = row["in-process"]["step_ms_mean"], row["process"]["step_ms_mean"]
        for name in ("in-process", "process", "ray"):
            run = row.get(name)
            if run is None:
                continue
            mean = run["step_ms_mean"]
            lines.append(f"| {row['batch']} | {name} | {mean:.2f} / {run['step_ms_p95']:.2f} "
                         f"| {1000 * mean / row['batch']:.0f} | {mean / proc:.2f}x | {mean / base:.1f}x "
                         f"| {_cell(run, 'startup_s', '.2f')} | {_cell(run, 'restart_s', '.2f')} |")
    return lines


def print_row(row: dict) -> None:
    """One line per batch size: the three backends side by side and Ray's ratio to processes."""
    cells = [f"{name} {row[name]['step_ms_mean']:.2f} ms" for name in ("in-process", "process", "ray") if name in row]
    ratio = f"  ray/process {row['ray']['step_ms_mean'] / row['process']['step_ms_mean']:.2f}x" if "ray" in row else ""
    print(f"{row['batch']:4d} envs per step: " + " | ".join(cells) + ratio, flush=True)


def write_report(report: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pool-bench.json").write_text(json.dumps(report, indent=2))
    md = ["# Env pool overhead per step: in-process vs EnvPool (processes) vs RayEnvPool (Ray actors)", "",
          f"A no-op env, {report['workers']} workers or actors, {report['steps']} timed step calls per "
          f"configuration; each step call moves every env once. {report['cores']} cores, load average "
          f"{report['load_average_start']:.1f} at the start and {report['load_average_end']:.1f} at the end."
          + (f" Ray {report['ray_version']} on a local instance (started in {report['ray_init_s']:.1f} s, "
             f"not counted)." if "ray_version" in report else " Ray is not installed."), "",
          *table(report), "",
          "The env does no work, so every figure is the pool's own cost: sending the actions, running "
          "the calls, pickling and returning the results. \"step after a kill\" is the first step call "
          "after one worker process (os.kill SIGKILL) or actor (ray.kill) was killed between steps: the "
          "death is noticed, a replacement started and its envs replayed; no env fails.", ""]
    (OUT / "pool-bench.md").write_text("\n".join(md))
    print(f"wrote {OUT / 'pool-bench.md'} and pool-bench.json")


# -- Sokoban throughput ---------------------------------------------------------------------------


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


def run_sokoban(num_envs: int, rounds: int, obs_mode: str, worker_counts: list[int]) -> None:
    """Print Sokoban steps per second for a plain loop and EnvPool with each worker count."""
    env_kwargs = {"obs_mode": obs_mode}
    # Start multiprocessing's fork server once, so the first pool's startup is comparable.
    t0 = time.perf_counter()
    EnvPool(ENV_ID, num_envs=1, num_workers=1, env_kwargs=env_kwargs).close()
    warmup = time.perf_counter() - t0
    print(f"EnvPool benchmark: {num_envs} x {ENV_ID} (obs_mode={obs_mode}), {rounds} rounds, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"first pool (starts the fork server, 1 worker): {warmup:.2f} s")
    rows = [("in-process loop", bench_loop(num_envs, rounds, env_kwargs), None)]
    for workers in [0, *worker_counts]:
        label = f"EnvPool {workers} worker{'s' * (workers != 1)}" + (" (in-process)" if workers == 0 else "")
        rate, startup = bench_pool(num_envs, rounds, env_kwargs, workers)
        rows.append((label, rate, startup))
    base = rows[0][1]
    print(f"{'configuration':32s} {'steps/s':>10s} {'ratio':>7s} {'startup':>9s}")
    for label, rate, startup in rows:
        start = "-" if startup is None else f"{startup:.2f} s"
        print(f"{label:32s} {rate:10.0f} {rate / base:6.2f}x {start:>9s}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sokoban", action="store_true", help="Sokoban throughput instead of overhead")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--batches", default="8,64", help="overhead: comma-separated envs per step")
    parser.add_argument("--steps", type=int, default=300, help="overhead: timed step calls per configuration")
    parser.add_argument("--envs", type=int, default=64, help="sokoban: number of envs (default 64)")
    parser.add_argument("--rounds", type=int, default=300, help="sokoban: steps per env per configuration")
    parser.add_argument("--workers", default=None,
                        help="worker processes / actors: one number for overhead (default 2), "
                             "a comma-separated list for sokoban (default 1,2,8)")
    parser.add_argument("--obs-mode", default="text", choices=["text", "image", "both"])
    args = parser.parse_args(argv)
    if args.sokoban:
        counts = [int(w) for w in (args.workers or "1,2,8").split(",")]
        run_sokoban(args.envs, 30 if args.quick else args.rounds, args.obs_mode, counts)
        return
    steps = 100 if args.quick else args.steps
    report = run_overhead([int(b) for b in args.batches.split(",")], int(args.workers or 2), steps)
    report["quick"] = args.quick
    write_report(report)


if __name__ == "__main__":
    main()
