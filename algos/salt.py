"""SALT - Step-level Advantage Assignment via Trajectory graph (algorithms.md §7, our spec [RECON]).

The G trajectories of a task form a graph in which identical steps are merged into one edge. A
step's advantage is the mean trajectory advantage A_j over the trajectories j of the same task
group that traverse the step's edge: a step shared by successes and failures gets about 0 (it did
not decide the outcome), a step unique to one trajectory keeps that trajectory's A_i.

    A_step(row) = mean { A_j : trajectory j of the row's task group traverses edge(row) }

Edge keys:
    "prefix": (position t, the whole sequence of (anchor, action) pairs of the trajectory up to and
              including step t) - a tree: two steps merge only if their entire histories agree.
    "state":  (anchor, action) - merges re-converging paths (needs history-free, GiGPO-style anchors).
"""

from __future__ import annotations


import numpy as np

from dataclasses import dataclass
from typing import Literal

from algos.advantages import group_normalize
from algos.registry import option, register_estimator
from algos.rloo import leave_one_out, trajectory_frame
from algos.steptable import StepTable, combine_codes, factorize



def trajectory_advantages(table: StepTable, base: str, eps: float) -> np.ndarray:
    """The base trajectory advantage A_i, indexed by trajectory code.

    "grpo": (R_i - mean) / (std_u + eps) over the group's trajectories, each counted once (§7.2);
            a single-trajectory group uses mean 0, std 1 as the grpo estimator does.
    "rloo": R_i - mean of the group's other trajectories; 0 for a single-trajectory group.
    """
    traj_group, traj_return = trajectory_frame(table)
    if base == "grpo":
        return group_normalize(traj_return, traj_group, mode="mean_std_norm", eps=eps, singleton="zero_mean")
    return leave_one_out(traj_return, traj_group, table.n_groups)


def edge_codes(table: StepTable, merge: str) -> np.ndarray:
    """int64 edge code per row (§7.1 merge key), inside the row's task group.

    Without an action column (`table.action is None`) a step is keyed by its anchor alone.
    "prefix" walks the positions once, extending each trajectory's prefix code with the step's
    (anchor, action) code; codes of different positions are offset so they never collide.
    """
    if table.action is None:
        step, _ = combine_codes(table.group_codes, table.anchor_codes)
    else:
        step, _ = combine_codes(table.group_codes, table.anchor_codes, factorize(table.action)[0])
    if merge == "state" or len(table) == 0:
        return step

    pos, traj = table.position, table.traj_codes
    out = np.empty(len(table), dtype=np.int64)
    prefix = np.zeros(table.n_trajs, dtype=np.int64)  # code of each trajectory's prefix so far
    offset = 0
    for t in range(int(pos.max()) + 1):  # loop over time, not rows
        rows = np.flatnonzero(pos == t)
        code, k = combine_codes(prefix[traj[rows]], step[rows])
        prefix[traj[rows]] = code
        out[rows] = code + offset
        offset += k
    return out


@dataclass
class SALTOptions:
    base: Literal["grpo", "rloo"] = option(
        "grpo", "the trajectory advantage A_i to refine: grpo (per-trajectory pooling, std_u, the §7.2 numbers) "
        "or rloo (leave-one-out baseline)")
    merge: Literal["prefix", "state"] = option(
        "prefix", "prefix: edge = position + the whole (anchor, action) history, a tree; state: edge = "
        "(anchor, action), merges re-converging paths")
    eps: float = option(1e-6, "added to the std of the grpo base", ge=0)


@register_estimator("salt", options=SALTOptions)
def salt(table: StepTable, opt: SALTOptions) -> np.ndarray:
    """The mean trajectory advantage over the trajectories that traverse the step's edge (§7).

    The action column is optional: without it the edge uses the anchors only (prefix: the anchor
    sequence; state: the anchor). A trajectory that traverses an edge several times ("state"
    merge, loops) counts once in the edge's mean.
    """
    base, merge, eps = opt.base, opt.merge, opt.eps
    adv_traj = trajectory_advantages(table, base, eps)
    edge = edge_codes(table, merge)
    # one entry per (edge, trajectory) pair, so a trajectory looping over an edge counts once
    pair, n_pairs = combine_codes(edge, table.traj_codes)
    first = np.empty(n_pairs, dtype=np.int64)
    first[pair] = np.arange(len(table))  # a representative row of each pair (all share edge and trajectory)
    e, a = edge[first], adv_traj[table.traj_codes[first]]
    n_edges = int(edge.max(initial=-1)) + 1
    mean = np.bincount(e, weights=a, minlength=n_edges) / np.maximum(np.bincount(e, minlength=n_edges), 1)
    return mean[edge]
