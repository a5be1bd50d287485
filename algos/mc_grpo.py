"""MC-GRPO - Median-Centred GRPO for small rollout budgets (algorithms.md §13, lotusroot-kim/MC-GRPO).

Each task group holds G + 1 trajectories. The baseline is the group's median return m, taken as
an actual element (the pivot); the pivot's own advantage would be 0, so it is removed from
training and the other G trajectories carry the gradient:

    A_i = (R_i - m) / scale,   scale = MAD + mad_eps,  MAD = median_j |R_j - m|   ("mad", faithful)
                               scale = std_u(R) + eps                             ("std")
                               scale = 1                                          ("none")

Pitfall (§13.1): with binary rewards MAD is usually 0, so |A| = 1 / mad_eps = 1000 for every
non-median trajectory; "std" and "none" are the safer choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from algos.advantages import group_stats
from algos.registry import option, register_estimator
from algos.rloo import trajectory_frame
from algos.steptable import StepTable



def trajectory_rank(table: StepTable) -> np.ndarray:
    """Rank of every trajectory's id (`table.traj`) in sorted order, indexed by trajectory code.

    Ties between equal returns are broken by this rank, so the pivot does not depend on the row
    order of the batch. Ids that cannot be sorted together (e.g. a mix of str and int) fall back
    to the trajectory codes, i.e. first appearance in the batch.
    """
    ids = np.empty(table.n_trajs, dtype=table.traj.dtype)
    ids[table.traj_codes] = table.traj
    try:
        order = np.argsort(ids, kind="stable")
    except TypeError:
        return np.arange(table.n_trajs)
    rank = np.empty(table.n_trajs, dtype=np.int64)
    rank[order] = np.arange(table.n_trajs)
    return rank


def _lower_middle(values: np.ndarray, codes: np.ndarray, n_codes: int, tie_rank: np.ndarray) -> np.ndarray:
    """Index of each code's lower-middle element: position (n-1)//2 of a stable sort by value,
    ties by `tie_rank` (for odd n the exact median; torch.median also returns the lower middle)."""
    order = np.lexsort((tie_rank, values, codes))
    count = np.bincount(codes, minlength=n_codes)
    starts = np.cumsum(count) - count
    return order[starts + (count - 1) // 2]


def median_pivots(table: StepTable) -> tuple[np.ndarray, np.ndarray]:
    """(pivot trajectory code, median return) of every task group, indexed by group code."""
    traj_group, traj_return = trajectory_frame(table)
    pivot = _lower_middle(traj_return, traj_group, table.n_groups, trajectory_rank(table))
    return pivot, traj_return[pivot]


@dataclass
class MCGRPOOptions:
    scale: Literal["mad", "std", "none"] = option(
        "mad", "mad: MAD + mad_eps (the paper; |A| = 1/mad_eps for binary rewards), std: std_u of the group's "
        "returns + eps, none: median-centring only (std and none are the safer choices, §13.1)")
    mad_eps: float = option(1e-3, "added to the MAD (1e-3 in the authors' code)", ge=0)
    eps: float = option(1e-6, "added to the std with scale=std", ge=0)


@register_estimator("mc_grpo", options=MCGRPOOptions, extra_rollouts=1, min_group_size=2)
def mc_grpo(table: StepTable, opt: MCGRPOOptions) -> np.ndarray:
    """Return minus the group's median, over a scale; the median pivot trajectory's rows are NaN.

    NaN means "not a training row": the trainer drops rows whose advantage is NaN, as MC-GRPO
    removes the pivot from the batch. It collects G + 1 rollouts per task for that.
    Median and pivot: trajectories (each counted once, return R(tau) = sum of its rewards) are
    stably sorted by return within the group, ties by trajectory id; the pivot is the element at
    position (G+1-1)//2, i.e. the exact middle for the intended odd group size and the lower-middle
    element for an even one. Among tied returns the first in id order is the pivot (§13.3). The
    MAD is the lower-middle of |R - m| over all G + 1 trajectories (pivot included). A group with
    one trajectory is all pivot: its rows are NaN.
    """
    scale, mad_eps, eps = opt.scale, opt.mad_eps, opt.eps
    traj_group, traj_return = trajectory_frame(table)
    pivot, median = median_pivots(table)
    dev = traj_return - median[traj_group]
    if scale == "mad":
        abs_dev = np.abs(dev)
        mad = abs_dev[_lower_middle(abs_dev, traj_group, table.n_groups, np.zeros(table.n_trajs))]
        denom = mad + mad_eps
    elif scale == "std":
        denom = group_stats(traj_return, traj_group, ddof=1, n_groups=table.n_groups).std + eps
    else:
        denom = np.ones(table.n_groups)

    adv = dev / denom[traj_group]
    adv[pivot] = np.nan
    return adv[table.traj_codes]
