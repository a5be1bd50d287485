"""Rows per second of the `grpo` and `gigpo` advantage estimators, side by side.

Batch: 16 task groups x 8 trajectories x 50 steps = 6,400 step rows (the verl-agent ALFWorld
shape, algorithms.md §1.2), with ALFWorld-like text anchors: each task has a small room graph, the
agent random-walks and picks things up, so states repeat within and across trajectories.

Two measurements per estimator, interleaved and repeated, median reported:
    cold  build the StepTable from Python lists and compute the advantages (what a trainer does
          each iteration: codes and time order are computed from scratch)
    warm  the estimator alone on a table whose integer codes are already cached

    python benchmarks/estimator_bench.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algos import StepTable, compute_advantages, compute_diagnostics  # noqa: E402

PLACES = ["countertop 1", "countertop 2", "cabinet 3", "drawer 1", "fridge 1", "sinkbasin 1", "stoveburner 2",
          "shelf 1", "diningtable 1", "microwave 1", "garbagecan 1", "toaster 1"]
OBJECTS = ["apple", "mug", "knife", "plate", "egg", "tomato", "spatula", "bowl"]
CONFIGS = {"grpo": dict(invalid_penalty=0.1), "gigpo": dict(invalid_penalty=0.1)}


def make_batch(seed: int = 0, n_groups: int = 16, group_size: int = 8, steps: int = 50) -> dict[str, list]:
    """Column lists for one batch (trajectory-major, time order, as the rollout engine emits)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("group", "traj", "turn", "reward", "anchor", "valid")}
    for g in range(n_groups):
        places = list(rng.choice(PLACES, size=6, replace=False))
        things = {p: list(rng.choice(OBJECTS, size=2, replace=False)) for p in places}
        for t in range(group_size):
            at, holding = 0, None
            success_at = int(rng.integers(10, steps)) if rng.random() < 0.5 else None
            for k in range(steps):
                here = places[at]
                anchor = (f"You are at {here}. On the {here}, you see a {things[here][0]} and a {things[here][1]}. "
                          + (f"You are carrying: {holding}." if holding else "Your hands are empty."))
                cols["group"].append(f"task-{g}")
                cols["traj"].append(f"task-{g}/rollout-{t}")
                cols["turn"].append(k)
                cols["reward"].append(10.0 if k == success_at else 0.0)
                cols["anchor"].append(anchor)
                cols["valid"].append(bool(rng.random() > 0.05))
                if rng.random() < 0.6:  # go somewhere nearby
                    at = int((at + rng.integers(-1, 2)) % len(places))
                elif rng.random() < 0.3:
                    holding = None if holding else things[places[at]][0]
    return cols


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    cols = make_batch()
    n = len(cols["group"])
    warm_table = StepTable(**cols)
    for name in CONFIGS:  # warm up caches and imports
        compute_advantages(name, warm_table, **CONFIGS[name])
    diag = compute_diagnostics("gigpo", warm_table, **CONFIGS["gigpo"])

    samples: dict[tuple[str, str], list[float]] = {(name, kind): [] for name in CONFIGS for kind in ("cold", "warm")}
    for _ in range(args.repeats):  # interleave the estimators so drift hits both alike
        for name, cfg in CONFIGS.items():
            samples[(name, "cold")].append(seconds(lambda: compute_advantages(name, StepTable(**cols), **cfg)))  # noqa: B023
            samples[(name, "warm")].append(seconds(lambda: compute_advantages(name, warm_table, **cfg)))  # noqa: B023

    print(f"batch: {n} rows = 16 groups x 8 trajectories x 50 steps; "
          f"{diag['step_group/count']:.0f} GiGPO step groups, mean size {diag['step_group/mean_size']:.2f}, "
          f"singleton rows {diag['step_group/singleton_frac']:.1%}; median of {args.repeats} repeats")
    for kind in ("cold", "warm"):
        rate = {name: n / statistics.median(samples[(name, kind)]) for name in CONFIGS}
        label = "table build + estimator" if kind == "cold" else "estimator, cached codes"
        print(f"{kind} ({label}): grpo {rate['grpo']:,.0f} rows/s ({n / rate['grpo'] * 1e3:.2f} ms)  "
              f"gigpo {rate['gigpo']:,.0f} rows/s ({n / rate['gigpo'] * 1e3:.2f} ms)  "
              f"grpo/gigpo speed ratio {rate['grpo'] / rate['gigpo']:.2f}")


if __name__ == "__main__":
    main()
