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

import numbers

import numpy as np

from algos.advantages import apply_invalid_penalty, discounted_returns, register_estimator
from algos.rloo import trajectory_frame
from algos.steptable import StepTable


def whiten(values: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / (std_u + eps) over all elements; a single element gives 0."""
    if values.size == 0:
        return values
    dev = values - values.mean()
    std = np.sqrt((dev**2).sum() / max(values.size - 1, 1))
    return dev / (std + eps)


@register_estimator("reinforce_pp")
def reinforce_pp(
    table: StepTable,
    *,
    gamma: float = 1.0,
    baseline: bool = False,
    eps: float = 1e-6,
    invalid_penalty: float = 0.0,
) -> np.ndarray:
    """REINFORCE++ advantage per step row.

    Config:
        gamma: discount of the return-to-go G_t (baseline=False). The baseline variant scores the
            whole trajectory with its undiscounted return, so gamma must stay 1.0 there (OpenRLHF
            forces gamma = 1 for reinforce_baseline; we refuse other values rather than ignore them).
        baseline: False = REINFORCE++ (whitened return-to-go, not group-relative); True =
            REINFORCE++-baseline (R(tau) minus the task group's mean of trajectory returns, each
            trajectory counted once, then whitened). A group with one trajectory uses baseline 0,
            as verl, so its R enters the whitening as is.
        eps: added to the batch std in the denominator.
        invalid_penalty: subtracted from x on rows whose action was invalid, before the whitening
            (after the returns / baselines, the offending row only; §1.1 step 2).
    """
    if not isinstance(gamma, numbers.Real) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"reinforce_pp: gamma must be in [0, 1], got {gamma!r}")
    if baseline not in (True, False):
        raise ValueError(f"reinforce_pp: baseline must be True or False, got {baseline!r}")
    if baseline and gamma != 1.0:
        raise ValueError(f"reinforce_pp: gamma must be 1.0 with baseline=True (the trajectory return "
                         f"R(tau) is undiscounted), got gamma={gamma!r}")

    if baseline:
        traj_group, traj_return = trajectory_frame(table)
        count = np.bincount(traj_group, minlength=table.n_groups)
        mean = np.bincount(traj_group, weights=traj_return, minlength=table.n_groups) / np.maximum(count, 1)
        mean[count == 1] = 0.0
        x = (traj_return - mean[traj_group])[table.traj_codes]
    else:
        x = discounted_returns(table, gamma)
    return whiten(apply_invalid_penalty(x, table, invalid_penalty), eps)
