"""REINFORCE++ (Hu et al. 2025, arXiv 2501.03262) and its "-baseline" variant, for step rows.

    REINFORCE++           x_t = G_t = sum_{k>=t} gamma^(k-t) r_k  (return-to-go of the step)
    REINFORCE++-baseline  x   = R(tau) - mean of the task group's trajectory returns
    then both             A   = (x - mean_batch x) / (std_u,batch x + eps)   (global whitening)

The whitening over the whole batch replaces the critic (plain REINFORCE++) or GRPO's per-group std
(the baseline variant: dividing by a group's std over-weights near-uniform groups; the batch std
only sets the step size). Conventions, checked against verl `core_algos.py`
(compute_reinforce_plus_plus_outcome_advantage / _baseline_outcome_advantage) and OpenRLHF
(experience maker, advantage_estimator "reinforce" / "reinforce_baseline"):
  * both references whiten, i.e. subtract the batch mean as well as divide by the batch std; with
    equal-length trajectories the baseline variant's batch mean is already 0;
  * std: verl uses the unbiased (Bessel) variance, OpenRLHF the population one. We use std_u, as
    verl and torch.std (algorithms.md §0.1); it differs from std_p by sqrt(n/(n-1)), i.e. only in
    the overall step size, which is negligible at batch sizes of hundreds of rows;
  * the statistics run over step rows here (one row = one agent step, every row weighted equally),
    whereas the references whiten over response tokens; the per-token returns of verl become
    per-step returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algos.advantages import apply_invalid_penalty, discounted_returns, group_stats
from algos.registry import option, register_estimator
from algos.rloo import trajectory_frame
from algos.steptable import StepTable


def whiten(values: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / (std_u + eps) over all elements; a single element gives 0."""
    if values.size == 0:
        return values
    dev = values - values.mean()
    std = np.sqrt((dev**2).sum() / max(values.size - 1, 1))
    return dev / (std + eps)


@dataclass
class ReinforcePPOptions:
    gamma: float = option(1.0, "discount of the return-to-go G_t (baseline=false); the baseline variant scores "
                          "the whole trajectory undiscounted, so it must stay 1.0 there", ge=0, le=1)
    baseline: bool = option(True, "true: REINFORCE++-baseline, R(tau) minus the task group's mean of trajectory "
                            "returns, then whitened; false: REINFORCE++, the whitened return-to-go")
    eps: float = option(1e-6, "added to the batch std in the denominator", ge=0)
    invalid_penalty: float = option(0.1, "subtracted from x on rows whose action was invalid, before the "
                                    "whitening (§1.1 step 2)", ge=0)


@register_estimator("reinforce_pp", options=ReinforcePPOptions)
def reinforce_pp(table: StepTable, opt: ReinforcePPOptions) -> np.ndarray:
    """REINFORCE++ advantage per step row: a return (or group-baselined return) whitened over the batch.

    A group with one trajectory uses baseline 0, as verl, so its R enters the whitening as is.
    """
    gamma, baseline = opt.gamma, opt.baseline
    if baseline and gamma != 1.0:
        raise ValueError(f"reinforce_pp: gamma must be 1.0 with baseline=True (the trajectory return "
                         f"R(tau) is undiscounted), got gamma={gamma!r}")

    if baseline:
        traj_group, traj_return = trajectory_frame(table)
        stats = group_stats(traj_return, traj_group, ddof=1, n_groups=table.n_groups)
        mean = np.where(stats.count == 1, 0.0, stats.mean)  # a lone trajectory: baseline 0, as verl
        x = (traj_return - mean[traj_group])[table.traj_codes]
    else:
        x = discounted_returns(table, gamma)
    return whiten(apply_invalid_penalty(x, table, opt.invalid_penalty), opt.eps)
