"""GRPO for the step-independent layout (algorithms.md §0.2, §0.7, §1.1 steps 2-3, §3.1).

Every step row carries its trajectory's episode return R(tau) and is normalised within its task
group; this is GiGPO's episode term on its own (and Flow-GRPO's turn-pooled advantage).
"""

from __future__ import annotations

import numpy as np

from algos.advantages import episode_advantages, register_estimator
from algos.steptable import StepTable


@register_estimator("grpo")
def grpo(
    table: StepTable,
    *,
    mode: str = "mean_std_norm",
    episode_stats_over: str = "steps",
    invalid_penalty: float = 0.0,
    eps: float = 1e-6,
) -> np.ndarray:
    """Group-normalised episode return, one advantage per step row.

    Config:
        mode: "mean_std_norm" (default, (R - mu) / (std_u + eps)) or "mean_norm" (R - mu, Dr.GRPO style).
        episode_stats_over: "steps" (default; mu/std over the group's step rows, a T-step trajectory
            counts T times, verl-agent / AgentFlow code) or "trajs" (each trajectory once, the papers).
        invalid_penalty: subtracted from R on rows whose action was invalid, after the returns are
            computed (§1.1 step 2; verl-agent scripts use 0.1).
        eps: added to the std in the denominator.
    A group with a single row ("steps") or a single trajectory ("trajs") uses mu = 0, sigma = 1.
    """
    return episode_advantages(table, mode=mode, episode_stats_over=episode_stats_over,
                              invalid_penalty=invalid_penalty, eps=eps)
