"""From trajectories to training rows: the estimator the config names, asked through the registry.

`rows_with_advantages` builds the StepTable of a batch, runs the estimator with its options (those
that follow a trainer setting filled in), adds the per-row columns it registered (clip ranges,
critic returns) and its diagnostics. Nothing here knows an estimator by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from agents.records import Trajectory
from algos.batching import Row
from algos.registry import estimator_diagnostics, run_estimator
from algos.steptable import StepTable
from algos.train_config import TrainConfig, setting


def rollouts_per_task(cfg: TrainConfig) -> int:
    """Rollouts collected per task: G, plus what the estimator asks for (MC-GRPO's pivot, §13.1)."""
    return cfg.rl.group_size + cfg.algo.estimator().extra_rollouts


def estimator_options(cfg: TrainConfig) -> Any:
    """The estimator's options: its `algo.<name>` section, with the options that follow a trainer
    setting (`EstimatorSpec.follows`) filled in from it when left None."""
    spec = cfg.algo.estimator()
    opt = getattr(cfg.algo, spec.name)
    followed = {key: setting(cfg, path) for key, path in spec.follows.items() if getattr(opt, key) is None}
    return dataclasses.replace(opt, **followed) if followed else opt


def healthy_steps(trajectories: list[Trajectory]) -> list[Any]:
    """The steps of the trajectories whose env did not fail, in batch order: the rows of a batch."""
    return [s for t in trajectories if t.error is None for s in t.steps]


def rows_with_advantages(trajectories: list[Trajectory], cfg: TrainConfig,
                         values: Any = None) -> tuple[list[Row], dict[str, float]]:
    """Per-step rows carrying their advantage; infrastructure failures are left out of training.

    Rows whose advantage is NaN are the estimator's way of leaving a row out (MC-GRPO's pivot).
    """
    steps = healthy_steps(trajectories)
    if not steps:
        return [], {}
    table = StepTable.from_records(steps, value=values)
    spec, opt = cfg.algo.estimator(), estimator_options(cfg)
    extra = run_estimator(spec.name, table, opt)
    adv = extra.pop("advantage")
    rows = []
    for k, (s, a) in enumerate(zip(steps, adv)):
        if not s.response_ids or np.isnan(a):
            continue
        meta = {"rollout_logprobs": s.logprobs, "turn": s.turn, "value": None if values is None else float(values[k])}
        if any(isinstance(m.get("content"), list) for m in s.messages):  # a chat with images (VLM step)
            meta["chat"] = s.messages
        meta.update({name: float(col[k]) for name, col in extra.items()})
        rows.append(Row(s.prompt_ids, s.response_ids, float(a), meta=meta))
    return rows, estimator_diagnostics(spec.name, table, adv, opt)


def informative_groups(trajectories: list[Trajectory]) -> list[list[Trajectory]]:
    """Task groups whose (healthy) trajectories do not all have the same return, in batch order."""
    groups: dict[int, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(t.group_id, []).append(t)
    out = []
    for group in groups.values():
        returns = [t.episode_return for t in group if t.error is None]
        if len(returns) > 1 and max(returns) - min(returns) > 1e-9:
            out.append(group)
    return out
