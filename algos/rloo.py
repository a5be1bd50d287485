"""RLOO - REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024, arXiv 2402.14740).

Each trajectory's baseline is the mean return of the *other* trajectories of its task group:

    A_i = R_i - mean_{j != i} R_j = G / (G - 1) * (R_i - mean_j R_j)      (G trajectories in the group)

so the baseline does not depend on the trajectory it scores (unbiased), and RLOO is GRPO's
mean_norm advantage (Dr.GRPO, §12) scaled by G / (G - 1). Trajectories count once each, whatever
their number of steps; the advantage is broadcast to every step row of the trajectory.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from algos.advantages import apply_invalid_penalty, group_stats
from algos.registry import option, register_estimator
from algos.steptable import StepTable


@dataclass
class RLOOOptions:
    invalid_penalty: float = option(
        0.1, "subtracted from the advantage of rows whose action was invalid, after the baselines, on the "
        "offending row only (so it does not move the other trajectories' baselines)", ge=0)


def trajectory_frame(table: StepTable) -> tuple[np.ndarray, np.ndarray]:
    """(group code, return R(tau)) of every trajectory, indexed by trajectory code."""
    traj_group = np.zeros(table.n_trajs, dtype=np.int64)
    traj_group[table.traj_codes] = table.group_codes
    traj_return = np.bincount(table.traj_codes, weights=table.reward, minlength=table.n_trajs)
    return traj_group, traj_return


def leave_one_out(values: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """values_i - mean of the other values with the same code; 0 for an element alone in its code
    (no other member, so no baseline: it carries no group-relative signal)."""
    stats = group_stats(values, codes, ddof=1, n_groups=n_codes)
    others = stats.count[codes] - 1
    return np.where(others > 0, values - (stats.total[codes] - values) / np.maximum(others, 1), 0.0)


@register_estimator("rloo", options=RLOOOptions)
def rloo(table: StepTable, opt: RLOOOptions) -> np.ndarray:
    """Leave-one-out advantage of the trajectory return, one value per step row.

    A group with a single trajectory has no leave-one-out baseline: its rows get A = 0 (minus the
    penalty on invalid rows).
    """
    traj_group, traj_return = trajectory_frame(table)
    adv = leave_one_out(traj_return, traj_group, table.n_groups)
    return apply_invalid_penalty(adv[table.traj_codes], table, opt.invalid_penalty)
