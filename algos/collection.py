"""Collecting task groups on one process or across the ranks of a distributed run."""

from __future__ import annotations

from typing import Any

from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.rollout import Rollout, collect, rollout_metrics
from algos import distributed as dist


def collect_groups(pool: Any, policy: Any, seeds: list[int], group_size: int, sampling: SamplingParams,
                   prompt: PromptBuilder, first_group_id: int = 0, **kwargs: Any) -> Rollout:
    """`collect` on one process, or across the ranks of a distributed run: each rank plays a
    contiguous slice of the task seeds (all `group_size` rollouts of each, so no group is split,
    with the group ids a single process would give them) and every rank gets all trajectories
    back in task order. The rollout metrics are recomputed over the whole batch. `sampling` is this
    rank's: its seed names a stream of its own (envs.seeds, "train_sampling" has the rank)."""
    ctx = dist.context()
    if not ctx.active:
        return collect(pool, policy, seeds, group_size, sampling, prompt, first_group_id=first_group_id, **kwargs)
    lo, hi = dist.shard_range(len(seeds))
    part = (collect(pool, policy, seeds[lo:hi], group_size, sampling, prompt, first_group_id=first_group_id + lo,
                    **kwargs) if hi > lo else Rollout([], {}))
    return merge_rollouts(dist.all_gather_objects(part))


def merge_rollouts(parts: list[Rollout]) -> Rollout:
    """One Rollout from the ranks' parts: trajectories in rank order, metrics over all of them
    (token counts summed, wall times the slowest rank's)."""
    trajs = [t for p in parts for t in p.trajectories]
    ms = [p.metrics for p in parts if p.metrics]
    slowest = max(ms, key=lambda m: m.get("time_total", 0.0)) if ms else {}
    timer = {"generation": slowest.get("time_generation", 0.0), "env": slowest.get("time_env", 0.0)}
    if "time_probe" in slowest:
        timer["probe"] = slowest["time_probe"]
    tokens = int(sum(m.get("tokens_generated", 0.0) for m in ms))
    return Rollout(trajs, rollout_metrics(trajs, tokens, slowest.get("time_total", 0.0), timer))
