"""From trajectories to training rows: the estimator the config names, asked through the registry.

`score_batch` builds the StepTable of a batch and runs the estimator with its options (those that
follow a trainer setting filled in), keeping the other per-row columns it returns (clip ranges,
critic returns); `rows_from_scored` turns that into training rows and diagnostics (`rows_with_advantages`
does both). Nothing here knows an estimator by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.records import StepRecord, Trajectory
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


def healthy_steps(trajectories: list[Trajectory]) -> list[StepRecord]:
    """The steps of the trajectories whose env did not fail, in batch order: the rows of a batch."""
    return [s for t in trajectories if t.error is None for s in t.steps]


def step_ranks(trajectories: list[Trajectory]) -> np.ndarray:
    """The process that played each of `healthy_steps(trajectories)` (all 0 in one process)."""
    return np.array([t.rank for t in trajectories if t.error is None for _ in t.steps], dtype=np.int64)


@dataclass
class ScoredBatch:
    """A batch as the estimator saw it: the healthy trajectories' steps in row order, their
    StepTable (None when there are no steps), the advantages and the estimator's other per-row
    columns ("clip", "return"), with the options it ran with. The trainer builds its rows from it
    and saves it (algos/saved_rollouts.py) as it is."""

    steps: list[StepRecord]
    table: StepTable | None
    advantages: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    values: Any = None  # the critic's value per row, when the estimator learns one
    options: Any = None  # the estimator's options object (estimator_options), None for an empty batch
    ranks: np.ndarray | None = None  # the process that played each row (distributed runs)


def score_batch(trajectories: list[Trajectory], cfg: TrainConfig, values: Any = None) -> ScoredBatch:
    """Run the configured estimator over the trajectories whose env did not fail (`values`: the
    critic's estimate per healthy step, for the estimators that learn one)."""
    steps = healthy_steps(trajectories)
    if not steps:
        return ScoredBatch([], None, np.zeros(0))
    table = StepTable.from_records(steps, value=values)
    spec, opt = cfg.algo.estimator(), estimator_options(cfg)
    columns = run_estimator(spec.name, table, opt)
    adv = columns.pop("advantage")
    return ScoredBatch(steps, table, adv, columns, values, opt, step_ranks(trajectories))


def rows_from_scored(batch: ScoredBatch, cfg: TrainConfig, rank: int = 0) -> tuple[list[Row], dict[str, float]]:
    """Per-step rows carrying their advantage, and the estimator's diagnostics. `rank`: this
    process in a distributed run; rows another rank played are marked not local.

    Rows whose advantage is NaN are the estimator's way of leaving a row out (MC-GRPO's pivot).
    """
    if batch.table is None:
        return [], {}
    rows = []
    for k, (s, a) in enumerate(zip(batch.steps, batch.advantages)):
        if not s.response_ids or np.isnan(a):
            continue
        rows.append(Row(
            s.prompt_ids, s.response_ids, float(a), turn=s.turn, rollout_logprobs=s.logprobs,
            value=None if batch.values is None else float(batch.values[k]),
            columns={name: float(col[k]) for name, col in batch.columns.items()},
            local=batch.ranks is None or int(batch.ranks[k]) == rank, pixel_inputs=s.pixel_inputs or {}))
    return rows, estimator_diagnostics(cfg.algo.estimator().name, batch.table, batch.advantages, batch.options)


def rows_with_advantages(trajectories: list[Trajectory], cfg: TrainConfig,
                         values: Any = None) -> tuple[list[Row], dict[str, float]]:
    """Per-step rows carrying their advantage; infrastructure failures are left out of training."""
    return rows_from_scored(score_batch(trajectories, cfg, values), cfg)


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
