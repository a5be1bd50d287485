"""GDPO - Group reward-Decoupled Normalization Policy Optimization (algorithms.md §14, NVlabs/GDPO TRL).

With K sub-rewards (correctness, format, length, ...), GRPO sums them and normalises the sum, so
different reward combinations collapse onto the same advantage. GDPO normalises each sub-reward
within the task group first, then sums with weights and z-scores the result over the batch:

    Â_k  = (r_k - mean_g r_k) / (std_u,g r_k + eps)      per component, within the task group
    A_pre = sum_k w_k Â_k
    A    = (A_pre - mean_batch) / (std_u,batch + eps)    over all trajectories of the batch

Everything is per trajectory (each counted once), where r_k is the sum of the component over the
trajectory's step rows; A is broadcast to the rows. This follows the TRL reference (per-sequence
batch statistics); verl-GDPO whitens over tokens instead (§14.1).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from dataclasses import dataclass
from typing import Optional

from algos.advantages import group_normalize
from algos.config import ranged
from algos.registry import option, register_estimator
from algos.rloo import trajectory_frame
from algos.steptable import StepTable


def _weights(table: StepTable, weights: Sequence[float] | None, n_components: int) -> np.ndarray:
    if weights is None:
        return np.ones(n_components)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)):
        raise ValueError(f"gdpo: weights must be a sequence of {n_components} numbers or None, got {weights!r}")
    if len(weights) != n_components:
        raise ValueError(f"gdpo: weights has {len(weights)} entries but the batch has {n_components} reward "
                         f"components {list(table.component_names)}; give one weight per component, in that order")
    if not all(isinstance(w, numbers.Real) and np.isfinite(w) for w in weights):
        raise ValueError(f"gdpo: weights must be finite numbers, got {weights!r}")
    return np.asarray(weights, dtype=np.float64)


@dataclass
class GDPOOptions:
    weights: Optional[list[float]] = ranged(None, metadata={"help": (  # ranged: each weight must be finite
        "one weight per named sub-reward, in the order of the table's component names (sorted names "
        "of info['reward_components']); null = all 1.0")})
    eps: float = option(1e-4, "added to the std in both denominators (1e-4 in the TRL reference)", ge=0)


@register_estimator("gdpo", options=GDPOOptions, reward_components=True)
def gdpo(table: StepTable, opt: GDPOOptions) -> np.ndarray:
    """Each sub-reward normalised within the task group, summed with weights, z-scored over the batch (§14).

    A component's trajectory value is the sum of its per-step values; NaN sub-rewards count as 0
    (as the reference treats NaN rewards). A group with a single trajectory has no group-relative
    signal: each of its components normalises to 0. A batch with a single trajectory gets A = 0.
    The total reward column `table.reward` is not used.
    """
    weights, eps = opt.weights, opt.eps
    if table.components is None:
        raise ValueError(
            "gdpo needs named sub-rewards: the env must put info['reward_components'] = {name: value} "
            "on every step (e.g. {'correctness': 1.0, 'format': 0.5}) so that the StepTable has a "
            "`components` matrix; use 'grpo' for a single scalar reward")
    n_components = table.components.shape[1]
    w = _weights(table, weights, n_components)

    traj_group, _ = trajectory_frame(table)
    comp = np.nan_to_num(table.components, nan=0.0)
    per_traj = np.stack([np.bincount(table.traj_codes, weights=comp[:, k], minlength=table.n_trajs)
                         for k in range(n_components)], axis=1)  # [n_trajs, K]

    a_pre = np.zeros(table.n_trajs)
    for k in range(n_components):  # K is a handful of named rewards
        a_pre += w[k] * group_normalize(per_traj[:, k], traj_group, mode="mean_std_norm", eps=eps,
                                        singleton="own_value")
    batch = group_normalize(a_pre, np.zeros(table.n_trajs, dtype=np.int64), mode="mean_std_norm", eps=eps,
                            singleton="own_value")
    return batch[table.traj_codes]
