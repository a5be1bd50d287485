"""Flow-GRPO (AgentFlow, algorithms.md §3): the trajectory's outcome broadcast to every turn.

Each turn is its own training row (the step-independent layout); every row of a trajectory takes
the trajectory's outcome R(tau), normalised GRPO-style within its query group. AgentFlow's code pools
the statistics over turn rows (a T-turn trajectory counts T times); its paper normalises over
trajectories. For outcome-only rewards R(tau) is the final reward; with shaped rewards it is their sum.
"""

from __future__ import annotations

import numpy as np

from algos.advantages import episode_advantages, register_estimator
from algos.steptable import StepTable

POOLS = ("turns", "trajs")


@register_estimator("flow_grpo")
def flow_grpo(table: StepTable, *, pool: str = "turns", eps: float = 1e-6) -> np.ndarray:
    """Config:
        pool: "turns" (default, AgentFlow's code: mean/std_u over turn rows) or "trajs" (the
            paper's equation: each trajectory once).
        eps: added to the std in the denominator. A group with one element uses mu = 0, sigma = 1.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return episode_advantages(table, mode="mean_std_norm", eps=eps,
                              episode_stats_over="steps" if pool == "turns" else "trajs")
