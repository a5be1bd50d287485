"""The trainer's evaluation: one episode per seeded evaluation task, each task's outcome kept.

`groupwise eval` and the trainer both call `evaluate`; bench.md pairs two policies task by task on
the outcomes it returns.
"""

from __future__ import annotations

from typing import Any

from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.records import Trajectory
from agents.rollout import collect, success_by_task_type
from algos import distributed as dist
from algos.train_config import TrainConfig
from envs.seeds import eval_task_seeds, stream


def evaluate(policy: Any, pool: Any, prompt: PromptBuilder, cfg: TrainConfig,
             progress: bool = False) -> tuple[dict[str, float], dict[str, list]]:
    """One episode on each evaluation task (`eval.seed` .. + `eval.episodes` - 1, in envs.seeds'
    evaluation range; `pool` holds the env's evaluation split where it has one).

    Returns the metrics (success, return, steps, success per task type, over the episodes whose env
    did not fail; "failed_episodes" counts those that did) and the outcome of every task in task
    order, {"seed", "success", "return", "failed"}: the mean over its `eval.samples_per_task`
    episodes that played (null if none did), so two policies can be compared task by task.
    `progress` shows a bar of finished episodes."""
    ev = cfg.eval
    k = ev.samples_per_task
    seeds = eval_task_seeds(ev.seed, ev.episodes)
    lo, hi = dist.shard_range(len(seeds))  # distributed: each rank plays its slice of the rooms
    if getattr(policy, "model", None) is not None:  # scripted and served policies have no local model
        policy.model.eval()
    per_call = max(pool.num_envs // k, 1)
    if per_call * k > pool.num_envs:
        raise ValueError(f"eval.samples_per_task={k} needs a pool of at least {k} envs; it has {pool.num_envs}")
    trajs: list[Trajectory] = []
    for chunk, start in enumerate(range(lo, hi, per_call)):
        sampling = SamplingParams(temperature=ev.temperature, max_new_tokens=cfg.rl.max_new_tokens, greedy=ev.greedy,
                                  seed=stream(cfg.seed, "eval_sampling", chunk, dist.context().rank))
        trajs += collect(pool, policy, seeds[start:min(start + per_call, hi)], k, sampling, prompt,
                         progress=progress and dist.is_main()).trajectories
    trajs = [t for part in dist.all_gather_objects(trajs) for t in part]
    played = [t for t in trajs if t.error is None]  # an env that failed says nothing of the policy
    n = max(len(played), 1)
    metrics = {"success": sum(t.won for t in played) / n, "return": sum(t.episode_return for t in played) / n,
               "steps": sum(t.length for t in played) / n, "failed_episodes": float(len(trajs) - len(played)),
               **success_by_task_type(played, counts=True)}
    tasks = [trajs[i:i + k] for i in range(0, len(trajs), k)]  # collect keeps a task's k episodes together
    outcomes = {"seed": [g[0].seed for g in tasks], "success": [], "return": [],
                "failed": [sum(t.error is not None for t in g) for g in tasks]}
    for g in tasks:  # a task whose every episode failed has no outcome (null)
        ok = [t for t in g if t.error is None]
        outcomes["success"].append(round(sum(t.won for t in ok) / len(ok), 6) if ok else None)
        outcomes["return"].append(round(sum(float(t.episode_return) for t in ok) / len(ok), 6) if ok else None)
    return metrics, outcomes
