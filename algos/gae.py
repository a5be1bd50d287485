"""GAE - generalised advantage estimation with a learned critic (PPO's classic baseline).

In the step-independent layout (algorithms.md §0.2) a turn is one decision, so GAE runs over turns:

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)          V after the last turn = 0
    A_t     = delta_t + gamma * lam * A_{t+1}
    R_t     = A_t + V(s_t)                              the critic's regression target

V(s_t) is the critic's value of the turn's prompt (the `value` column, filled in by the trainer
from `algos.critic.Critic`). The last turn is treated as terminal also when the episode hit its
step limit, as verl-agent does: the environment's time limit is part of the task.
Unlike the group estimators, GAE needs no group: each trajectory is judged against the critic.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from algos.advantages import discounted_sums
from algos.registry import CriticOptions, option, register_estimator
from algos.steptable import StepTable


def gae_advantages(table: StepTable, gamma: float = 1.0, lam: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, returns) per row, before any whitening; returns = advantages + values."""
    if table.value is None:
        raise ValueError("gae needs the critic's values in StepTable.value; the trainer fills them in "
                         "when algo.name=gae (a StepTable built by hand must pass value=...)")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gae: gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    order = table.time_order
    v = table.value[order]
    r = table.reward[order]
    traj = table.traj_codes[order]
    # V(s_{t+1}) is the next row's value inside the same trajectory, 0 after its last turn
    same_next = np.append(traj[1:] == traj[:-1], False)
    v_next = np.where(same_next, np.append(v[1:], 0.0), 0.0)
    delta = r + gamma * v_next - v
    delta_rows = np.empty_like(delta)
    delta_rows[order] = delta
    # A_t = delta_t + gamma*lam*A_{t+1} is the (gamma*lam)-discounted sum of the TD errors
    adv = discounted_sums(table, delta_rows, gamma * lam)
    return adv, adv + table.value


@dataclass
class GAEOptions(CriticOptions):
    """PPO with a critic: a value model trained alongside the policy on the GAE returns."""

    gamma: float = option(1.0, "discount over turns (verl's default 1.0)", ge=0, le=1)
    lam: float = option(1.0, "GAE's lambda (1.0 = Monte-Carlo return minus the value; 0 = one-step TD error)",
                        ge=0, le=1)
    whiten: bool = option(True, "normalise the advantages to mean 0, std 1 over the batch (verl's masked_whiten; "
                          "the critic's returns are taken before whitening)")
    eps: float = option(1e-8, "added to the std of the whitening", ge=0)


@register_estimator("gae", options=GAEOptions, critic=True)
def gae(table: StepTable, opt: GAEOptions) -> dict[str, np.ndarray]:
    """GAE over turns with the critic's values, whitened over the batch; the critic learns the returns."""
    adv, returns = gae_advantages(table, opt.gamma, opt.lam)
    if opt.whiten and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + opt.eps)
    return {"advantage": adv, "return": returns}
