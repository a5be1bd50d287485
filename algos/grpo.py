"""GRPO for the step-independent layout (algorithms.md §0.2, §0.7, §1.1 steps 2-3, §3.1).

Every step row carries its trajectory's episode return R(tau) and is normalised within its task
group; this is GiGPO's episode term on its own (and Flow-GRPO's turn-pooled advantage).
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from algos.advantages import NormMode, StatsOver, episode_advantages
from algos.registry import option, register_estimator
from algos.steptable import StepTable


@dataclass
class GRPOOptions:
    mode: NormMode = option("mean_std_norm", "mean_std_norm: (R - mu) / (std_u + eps); mean_norm: R - mu (Dr.GRPO style)")
    episode_stats_over: StatsOver = option(
        "steps", "steps: mu and std over the group's step rows (a T-step trajectory counts T times, verl-agent); "
        "trajs: each trajectory once (the papers)")
    invalid_penalty: float = option(0.1, "subtracted from R on rows whose action was invalid, after the returns "
                                    "(§1.1 step 2; the verl-agent scripts use 0.1)", ge=0)
    eps: float = option(1e-6, "added to the std in the denominator", ge=0)


@register_estimator("grpo", options=GRPOOptions)
def grpo(table: StepTable, opt: GRPOOptions) -> np.ndarray:
    """Group-normalised episode return R(tau), one advantage per step row.

    A group with a single row ("steps") or a single trajectory ("trajs") uses mu = 0, sigma = 1.
    """
    return episode_advantages(table, mode=opt.mode, episode_stats_over=opt.episode_stats_over,
                              invalid_penalty=opt.invalid_penalty, eps=opt.eps)
