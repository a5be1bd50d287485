"""Weights & Biases tracking (`logger.wandb=true`, pip install 'groupwise[wandb]').

The run logs what TensorBoard gets (every finite number of every `log` call, at the same
iteration), the success curves as W&B line plots, and at each saved sample (algos/saved_rollouts.py)
a table of a few of its trajectories, one row per step. Offline by default: the run is written to
`<out_dir>/wandb/offline-run-*` and nothing leaves the machine until `wandb sync`. A resumed run
continues the same W&B run (its id is kept in `<out_dir>/wandb-run-id`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from algos.config import ConfigError
from algos.logger import _finite, _scalar
from algos.train_config import LoggerConfig

#: Trajectories per sample table: enough to see wins and losses side by side, small enough to browse.
TABLE_TRAJECTORIES = 8
TABLE_COLUMNS = ["iteration", "group", "trajectory", "won", "turn", "observation", "response", "action", "reward",
                 "valid", "anchor_group", "advantage", "episode_term", "step_term"]


def wandb_mode(cfg: LoggerConfig) -> str:
    """logger.wandb_mode, else $WANDB_MODE, else offline."""
    return cfg.wandb_mode or os.environ.get("WANDB_MODE") or "offline"


def check_wandb(cfg: LoggerConfig) -> None:
    """Before any work: logger.wandb=true needs the wandb package."""
    if not cfg.wandb:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("logger.wandb=true needs Weights & Biases: pip install 'groupwise[wandb]' "
                          "(or leave logger.wandb=false)") from None


class WandbTracker:
    """One W&B run for a training run; `log` takes what MetricsLogger.log takes."""

    def __init__(self, cfg: LoggerConfig, out_dir: str | Path, config: Mapping[str, Any], resuming: bool = False):
        import wandb

        out = Path(out_dir)
        id_file = out / "wandb-run-id"
        run_id = id_file.read_text().strip() if resuming and id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity,
                              name=cfg.wandb_run_name or out.resolve().name, dir=str(out), mode=wandb_mode(cfg),
                              config=dict(config), id=run_id, resume="allow")
        self._wandb = wandb

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        numbers = {k: float(_scalar(v)) for k, v in metrics.items() if _finite(v)}
        if numbers:
            self.run.log(numbers, step=int(step))

    def log_samples(self, step: int, lines: Sequence[Mapping[str, Any]]) -> None:
        """A table of up to TABLE_TRAJECTORIES trajectories of a saved sample (its JSONL lines),
        taking won and lost ones alternately so both show."""
        won = [t for t in lines if t.get("won")]
        lost = [t for t in lines if not t.get("won")]
        picked = [t for pair in zip(won, lost) for t in pair] + won[len(lost):] + lost[len(won):]
        rows = []
        for t in picked[:TABLE_TRAJECTORIES]:
            for s in t["steps"]:
                terms = s.get("terms") or {}
                rows.append([step, t["group_id"], t["traj_id"], bool(t.get("won")), s["turn"], s["observation"],
                             s["response"], s.get("action") or "", s["reward"], s["valid"], s.get("anchor_group"),
                             s.get("advantage"), terms.get("episode"), terms.get("step")])
        self.run.log({"samples": self._wandb.Table(columns=TABLE_COLUMNS, data=rows)}, step=int(step))

    def log_curves(self, evals: Sequence[Mapping[str, Any]], rollout: Sequence[tuple[int, float]]) -> None:
        """The success curves as W&B line plots (evaluation, and the training batches')."""
        plot = self._wandb.plot.line
        for key, points in (("eval_success", [(e["iteration"], e["success"]) for e in evals]),
                            ("rollout_success", list(rollout))):
            table = self._wandb.Table(columns=["iteration", "success"], data=[list(p) for p in points])
            self.run.log({f"curves/{key}": plot(table, "iteration", "success", title=key.replace("_", " "))})

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        for k, v in (summary or {}).items():
            if _finite(v):
                self.run.summary[k] = float(_scalar(v))
        self.run.finish()


class Loggers:
    """Several metric sinks behind MetricsLogger's `log` / `close`."""

    def __init__(self, *sinks: Any):
        self.sinks = sinks

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(step, metrics)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
