"""Saved samples: an iteration's trajectories with what the trainer computed for them.

Every `save_rollouts_every` iterations (default: at each evaluation) and at the last one, the
trainer writes `<out_dir>/rollouts/iter-NNNNNN.jsonl` (NNNNNN = the iteration as metrics.jsonl
counts it, 1-based). One line per trajectory: the trajectory's own JSON (agents/records.py: step
records with the chat, token ids and logprobs; frames as PNG data URIs), plus

    iteration, estimator      on the line
    per step:
      advantage     what the loss used for this row; null for rows left out (an env that failed,
                    an empty response, an estimator's NaN)
      terms         the advantage's named parts where the estimator registers them (GiGPO:
                    {"episode": A_E, "step": w * A_S}, which add up to `advantage`); else {}
      anchor_group  the step group the estimator compared the row within (GiGPO's anchor-state
                    groups; otherwise equal anchors within the task group), an int unique in the
                    file; null for steps outside the batch
      clip          [low, high], the PPO clip range of the row (per turn for A2TGPO)
      columns       the other per-row columns the estimator returned (GAE's "return")
      trained       whether the row went into the update

Nothing is recomputed differently: the advantages, columns and groups are the trainer's own
(`algos.advantage_rows.ScoredBatch`); only the terms and groups are asked of the estimator's
registered hooks, which are the functions its advantages are built from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agents.records import Trajectory, json_fields, write_jsonl
from algos.advantage_rows import ScoredBatch
from algos.registry import advantage_terms, step_groups
from algos.train_config import TrainConfig

ROLLOUTS_DIR = "rollouts"


def rollouts_due(cfg: TrainConfig, done: int) -> bool:
    """Whether iteration `done` (1-based) is one whose rollouts are saved."""
    every = cfg.eval.every if cfg.save_rollouts_every is None else cfg.save_rollouts_every
    return every > 0 and (done % every == 0 or done == cfg.rl.iterations)


def rollout_path(out_dir: str | Path, iteration: int) -> Path:
    return Path(out_dir) / ROLLOUTS_DIR / f"iter-{iteration:06d}.jsonl"


class _Line:
    """A trajectory and the trainer's per-step values, as `write_jsonl` writes it (to_json)."""

    def __init__(self, traj: Trajectory, head: dict[str, Any], per_step: list[dict[str, Any]]):
        self.traj, self.traj_id, self.head, self.per_step = traj, traj.traj_id, head, per_step

    def to_json(self) -> dict[str, Any]:
        # Trajectory.to_json's asdict deep-copies every chat and id list; JSON needs no copy, and
        # shallow dicts make the writer ~3x faster (records hold no nested dataclass below steps)
        data = {**self.head, **vars(self.traj)}
        data["steps"] = [{**json_fields(vars(step).items()), **extra}
                         for step, extra in zip(self.traj.steps, self.per_step)]
        return data


def save_rollouts(out_dir: str | Path, iteration: int, trajectories: list[Trajectory], scored: ScoredBatch,
                  cfg: TrainConfig) -> Path:
    """Write `trajectories` with the values in `scored` to rollouts/iter-NNNNNN.jsonl; its path."""
    spec = cfg.algo.estimator()
    n = len(scored.steps)
    terms: dict[str, np.ndarray] = {}
    groups = np.full(n, -1, dtype=np.int64)
    if scored.table is not None:
        terms = advantage_terms(spec.name, scored.table, scored.options)
        groups = step_groups(spec.name, scored.table, scored.options)
    default_clip = [cfg.loss.clip_low, cfg.loss.clip_high]
    row_of = {id(s): k for k, s in enumerate(scored.steps)}
    lines = []
    for t in trajectories:
        per_step = []
        for s in t.steps:
            k = row_of.get(id(s))
            if k is None:  # not in the batch: its env failed
                per_step.append({"advantage": None, "terms": {}, "anchor_group": None, "clip": default_clip,
                                 "columns": {}, "trained": False})
                continue
            adv = float(scored.advantages[k])
            clip = scored.columns.get("clip")  # A2TGPO's per-turn range is symmetric (algos/rl.py reads it so)
            per_step.append({
                "advantage": None if np.isnan(adv) else adv,
                "terms": {name: _num(col[k]) for name, col in terms.items()},
                "anchor_group": int(groups[k]),
                "clip": default_clip if clip is None else [float(clip[k])] * 2,
                "columns": {name: _num(col[k]) for name, col in scored.columns.items() if name != "clip"},
                "trained": bool(s.response_ids) and not np.isnan(adv),
            })
        lines.append(_Line(t, {"iteration": iteration, "estimator": spec.name}, per_step))
    return write_jsonl(lines, rollout_path(out_dir, iteration))


def _num(x: Any) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x


def rollout_files(run_dir: str | Path) -> list[Path]:
    """A run folder's saved rollout files, in iteration order."""
    return sorted((Path(run_dir) / ROLLOUTS_DIR).glob("iter-*.jsonl"))


def read_rollouts(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a saved rollout file as plain dicts (frames stay PNG data URIs); a line that is
    not JSON is a ValueError naming the file and line."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not a JSON line ({exc})") from None
            if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
                raise ValueError(f"{path}:{n}: not a trajectory line (no steps)")
            out.append(data)
    return out
