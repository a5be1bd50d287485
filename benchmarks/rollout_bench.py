"""Where rollout wall time goes: generation, env stepping, and the engine itself.

Plays Sokoban with the tiny model through `agents.rollout.collect` and prints, side by side for
each pool configuration, the share of wall time spent in generation, in the env pool and in the
engine (prompt building, parsing, recording). The engine share is the overhead groupwise adds.

    python benchmarks/rollout_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from agents.hf import HFPolicy
from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.rollout import collect
from agents.tiny import ensure_tiny_model, env_corpus
from envs import EnvPool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer episodes")
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--history", type=int, default=2)
    args = ap.parse_args()
    tasks = 4 if args.quick else args.tasks
    model_dir = Path(tempfile.gettempdir()) / "groupwise-bench-tiny"
    policy = HFPolicy(ensure_tiny_model(model_dir, env_corpus("sokoban", args.history)))
    prompt = PromptBuilder.for_env("sokoban", history_length=args.history)
    sampling = SamplingParams(max_new_tokens=16, seed=0)
    n = tasks * args.group_size
    print(f"{n} Sokoban episodes (tiny model, history {args.history}), max 16 new tokens per turn")
    print(f"{'pool':<12}{'wall s':>9}{'gen':>8}{'env':>8}{'engine':>8}{'steps':>8}{'tok/s':>9}")
    for workers in (0, 2):
        with EnvPool("sokoban", num_envs=n, num_workers=workers) as pool:
            m = collect(pool, policy, list(range(tasks)), args.group_size, sampling, prompt).metrics
        wall = m["time_total"]
        print(f"{f'{workers} workers':<12}{wall:>9.2f}{m['time_generation'] / wall:>8.1%}"
              f"{m['time_env'] / wall:>8.1%}{m['engine_share']:>8.1%}{m['steps'] * n:>8.0f}"
              f"{m['tokens_generated'] / m['time_generation']:>9.0f}")


if __name__ == "__main__":
    main()
