"""Rows per second of every registered advantage estimator, side by side (ratios to `grpo`).

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

from algos import StepTable, compute_advantages, compute_diagnostics, list_estimators  # noqa: E402

PLACES = ["countertop 1", "countertop 2", "cabinet 3", "drawer 1", "fridge 1", "sinkbasin 1", "stoveburner 2",
          "shelf 1", "diningtable 1", "microwave 1", "garbagecan 1", "toaster 1"]
OBJECTS = ["apple", "mug", "knife", "plate", "egg", "tomato", "spatula", "bowl"]
OPTIONS = {"grpo": dict(invalid_penalty=0.1), "gigpo": dict(invalid_penalty=0.1), "hgpo": dict(invalid_penalty=0.1)}


def make_batch(seed: int = 0, n_groups: int = 16, group_size: int = 8, steps: int = 50) -> dict[str, list]:
    """Column lists for one batch (trajectory-major, time order, as the rollout engine emits)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("group", "traj", "turn", "reward", "anchor", "valid", "action",
                                             "probe", "value", "components")}
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
                # the columns some estimators read: the action (SALT), the ground-truth probe
                # (IGPO / A2TGPO), the critic's value (GAE) and named sub-rewards (GDPO)
                cols["action"].append(str(rng.choice(["go", "take", "open", "look"])))
                cols["probe"].append(float(-3.0 + 2.5 * k / steps + 0.1 * rng.standard_normal()))
                cols["value"].append(float(rng.standard_normal()))
                cols["components"].append([10.0 if k == success_at else 0.0, float(rng.random() > 0.05)])
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
    names = list_estimators()
    for name in names:  # warm up caches and imports
        compute_advantages(name, warm_table, **OPTIONS.get(name, {}))
    diag = compute_diagnostics("gigpo", warm_table, **OPTIONS["gigpo"])

    samples: dict[tuple[str, str], list[float]] = {(name, kind): [] for name in names for kind in ("cold", "warm")}
    for _ in range(args.repeats):  # interleave the estimators so drift hits all alike
        for name in names:
            cfg = OPTIONS.get(name, {})
            samples[(name, "cold")].append(seconds(lambda: compute_advantages(name, StepTable(**cols), **cfg)))  # noqa: B023
            samples[(name, "warm")].append(seconds(lambda: compute_advantages(name, warm_table, **cfg)))  # noqa: B023

    print(f"batch: {n} rows = 16 groups x 8 trajectories x 50 steps; "
          f"{diag['step_group/count']:.0f} GiGPO step groups, mean size {diag['step_group/mean_size']:.2f}, "
          f"singleton rows {diag['step_group/singleton_frac']:.1%}; median of {args.repeats} repeats\n")
    print("| estimator | cold: table build + estimator (ms) | warm: estimator, cached codes (ms) | warm rows/s | "
          "warm time / grpo's |")
    print("|---|---|---|---|---|")
    base = statistics.median(samples[("grpo", "warm")])
    for name in names:
        cold, warm = statistics.median(samples[(name, "cold")]), statistics.median(samples[(name, "warm")])
        print(f"| {name} | {cold * 1e3:.2f} | {warm * 1e3:.2f} | {n / warm:,.0f} | {warm / base:.1f} |")


if __name__ == "__main__":
    main()
