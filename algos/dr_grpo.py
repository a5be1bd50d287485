"""Dr.GRPO - "GRPO Done Right" advantage (algorithms.md §12): A = R - group mean, no std division.

Dividing by the group's std up-weights questions that are nearly always solved or failed (small
std); Dr.GRPO drops it. Its other half, the constant loss normaliser, is the loss aggregation
`seq-mean-token-sum-norm` (§0.4), not part of the advantage.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from algos.advantages import StatsOver, episode_advantages
from algos.registry import option, register_estimator
from algos.steptable import StepTable


@dataclass
class DrGRPOOptions:
    episode_stats_over: StatsOver = option(
        "steps", "steps: the mean over the group's step rows (a T-step trajectory counts T times, verl-agent); "
        "trajs: each trajectory once (the paper)")
    invalid_penalty: float = option(0.1, "subtracted from R on rows whose action was invalid, before the mean "
                                    "is taken (§1.1 step 2)", ge=0)


@register_estimator("dr_grpo", options=DrGRPOOptions)
def dr_grpo(table: StepTable, opt: DrGRPOOptions) -> np.ndarray:
    """R(tau) minus the task group's mean, one advantage per step row (GRPO's mean_norm).

    A group with a single row ("steps") or trajectory ("trajs") uses mean 0: A = R (verl's rule).
    """
    return episode_advantages(table, mode="mean_norm", episode_stats_over=opt.episode_stats_over,
                              invalid_penalty=opt.invalid_penalty)
