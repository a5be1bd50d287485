"""Flow-GRPO (AgentFlow, algorithms.md §3): the trajectory's outcome broadcast to every turn.

Each turn is its own training row (the step-independent layout); every row of a trajectory takes
the trajectory's outcome R(tau), normalised GRPO-style within its query group. AgentFlow's code pools
the statistics over turn rows (a T-turn trajectory counts T times); its paper normalises over
trajectories. For outcome-only rewards R(tau) is the final reward; with shaped rewards it is their sum.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass
from typing import Literal

from algos.advantages import episode_advantages
from algos.registry import option, register_estimator
from algos.steptable import StepTable


@dataclass
class FlowGRPOOptions:
    pool: Literal["turns", "trajs"] = option(
        "turns", "turns: mean and std_u over turn rows (AgentFlow's code); trajs: each trajectory once (the paper)")
    eps: float = option(1e-6, "added to the std in the denominator", ge=0)


@register_estimator("flow_grpo", options=FlowGRPOOptions)
def flow_grpo(table: StepTable, opt: FlowGRPOOptions) -> np.ndarray:
    """The trajectory's outcome, normalised within its query group, on every turn.

    A group with one element uses mu = 0, sigma = 1.
    """
    return episode_advantages(table, mode="mean_std_norm", eps=opt.eps,
                              episode_stats_over="steps" if opt.pool == "turns" else "trajs")
