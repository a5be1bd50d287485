"""Collecting task groups on one process or across the ranks of a distributed run."""

from __future__ import annotations

import dataclasses
from typing import Any

from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.records import Trajectory
from agents.rollout import Rollout, collect, rollout_metrics
from algos import distributed as dist


def collect_groups(pool: Any, policy: Any, seeds: list[int], group_size: int, sampling: SamplingParams,
                   prompt: PromptBuilder, first_group_id: int = 0, **kwargs: Any) -> Rollout:
    """`collect` on one process, or across the ranks of a distributed run: each rank plays a
    contiguous slice of the task seeds (all `group_size` rollouts of each, so no group is split,
    with the group ids a single process would give them) and every rank gets all trajectories
    back in task order. The rollout metrics are recomputed over the whole batch. `sampling` is this
    rank's: its seed names a stream of its own (envs.seeds, "train_sampling" has the rank).

    A rank keeps its own trajectories whole and gets the others' without their chats and pixel
    inputs (`Trajectory.rank` says which is which): the estimator reads ids, rewards and anchors,
    and each rank trains on the rows it played. `gather_chats` brings the chats to rank 0 when it
    saves the batch."""
    ctx = dist.context()
    if not ctx.active:
        return collect(pool, policy, seeds, group_size, sampling, prompt, first_group_id=first_group_id, **kwargs)
    lo, hi = dist.shard_range(len(seeds))
    part = (collect(pool, policy, seeds[lo:hi], group_size, sampling, prompt, first_group_id=first_group_id + lo,
                    **kwargs) if hi > lo else Rollout([], {}))
    for t in part.trajectories:
        t.rank = ctx.rank
    parts = dist.all_gather_objects(Rollout([_without_chats(t) for t in part.trajectories], part.metrics))
    parts[ctx.rank] = part
    return merge_rollouts(parts)


def _without_chats(t: Trajectory) -> Trajectory:
    return dataclasses.replace(t, steps=[dataclasses.replace(s, messages=[], pixel_inputs=None) for s in t.steps])


def gather_chats(trajectories: list[Trajectory]) -> None:
    """Give rank 0 the chats of the trajectories other ranks played (in place; every rank calls
    it, as it is a collective). Used before rank 0 saves a batch."""
    ctx = dist.context()
    if not ctx.active:
        return
    mine = {t.traj_id: [s.messages for s in t.steps] for t in trajectories if t.rank == ctx.rank}
    shares = dist.gather_objects_to_main(mine)
    if shares is None:
        return
    chats = {traj_id: chat for share in shares for traj_id, chat in share.items()}
    for t in trajectories:
        for s, messages in zip(t.steps, chats.get(t.traj_id, ())):
            s.messages = messages


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
