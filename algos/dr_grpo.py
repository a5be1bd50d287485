"""Dr.GRPO - "GRPO Done Right" advantage (algorithms.md §12): A = R - group mean, no std division.

Dividing by the group's std up-weights questions that are nearly always solved or failed (small
std); Dr.GRPO drops it. Its other half, the constant loss normaliser, is the loss aggregation
`seq-mean-token-sum-norm` (§0.4), not part of the advantage.
"""

from __future__ import annotations

import numpy as np

from algos.advantages import STATS_OVER, episode_advantages, register_estimator
from algos.steptable import StepTable


@register_estimator("dr_grpo")
def dr_grpo(
    table: StepTable, *, episode_stats_over: str = "steps", invalid_penalty: float = 0.0
) -> np.ndarray:
    """R(tau) - mean of the task group, one advantage per step row (GRPO's mean_norm).

    Config:
        episode_stats_over: "steps" (default; the mean over the group's step rows, a T-step
            trajectory counts T times, as verl-agent) or "trajs" (each trajectory once, the paper).
        invalid_penalty: subtracted from R on rows whose action was invalid before the mean is
            taken, as the `grpo` estimator does (§1.1 step 2).
    A group with a single row ("steps") or trajectory ("trajs") uses mean 0: A = R (verl's rule).
    """
    if episode_stats_over not in STATS_OVER:
        raise ValueError(f"dr_grpo: episode_stats_over must be one of {STATS_OVER}, got {episode_stats_over!r}")
    return episode_advantages(table, mode="mean_norm", episode_stats_over=episode_stats_over,
                              invalid_penalty=invalid_penalty)
