"""IGPO - Information Gain-based Policy Optimization (algorithms.md §4, 2026 code version).

Step-independent layout (§0.2): each row is one turn, carrying `probe` = ℓ_t, the policy's mean
log-prob of the ground truth given the context before turn t (§4.1). Per trajectory with T turns
(0-based t, rows in time order):

    v_t  = exp(ℓ_t) ("prob_diff", default) or ℓ_t ("log_prob_diff")
    r_t  = IG_t = v_{t+1} - v_t      for t < T-1   (skipped where NaN/inf or exactly 0.0)
    r_t  = R(τ)                      for t = T-1   (outcome: the trajectory's return)
    r̂_t  = (r_t - μ) / (σ + 1e-6), μ and σ = sqrt(pop_var + 1e-8) per task group over the pooled
           rewards ("joint") or the IG pool and the outcome pool separately ("separate"), σ := 1 for
           a pool of ≤ 1 element (whose r̂ is then 0)                                         (§4.2)
    A_t  = r̂_t + γ A_{t+1},  A_T = 0

Skipped turns (missing probe, or IG exactly 0.0) are not reward positions: they are left out of the
statistics. In the authors' token implementation such a turn has no reward token, so its tokens
join the next rewarded turn's segment: it inherits that turn's advantage and is not a discount
step. Here `skipped_turns="zero"` (default) gives it r̂ = 0 and keeps it as a turn-level step,
A_t = γ A_{t+1}; `skipped_turns="inherit"` reproduces the token implementation, A_t = A_{t+1}, and
the turn before it gets r̂_{t-1} + γ A_{t+1}. The two coincide for γ = 1 (the authors' setting)
and differ for γ < 1.

The helpers here (`turn_rewards`, `pool_zscore`) are shared with A²TGPO (§5); the accumulation is
`algos.advantages.discounted_sums`.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass
from typing import Literal

from algos.advantages import discounted_sums, episode_returns, group_stats
from algos.registry import option, register_estimator
from algos.steptable import StepTable

INFO_GAINS = ("prob_diff", "log_prob_diff")

_VAR_EPS = 1e-8  # inside the sqrt (IGPO's compute_group_stats)
_STD_EPS = 1e-6  # added to σ in the denominator (§0.1 ε_adv)


def require_probes(table: StepTable, estimator: str) -> None:
    """Raise if the batch carries no probe at all: the estimator would silently become GRPO-like."""
    if len(table) and not np.isfinite(table.probe).any():
        raise ValueError(
            f"{estimator}: every row's probe is NaN; the rollout must probe the ground truth "
            "(the env must give info['ground_truth'] and collect() must run with probe_ground_truth=True; "
            "the trainer enables probing for igpo/a2tgpo)"
        )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def turn_rewards(table: StepTable, info_gain: str = "prob_diff") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw turn rewards of §4.1 in row order: (reward, is_ig, is_outcome).

    is_ig marks rows whose IG is a reward position (not the last turn, finite, non-zero);
    is_outcome marks each trajectory's last turn, whose reward is R(τ). Other rows have reward 0.
    """
    check_choice("info_gain", info_gain, INFO_GAINS)
    n = len(table)
    probe = table.probe
    finite = np.isfinite(probe)
    # a -inf probe would give v = 0 under prob_diff; treat every non-finite probe as missing
    safe = np.where(finite, probe, 0.0)
    v = np.where(finite, np.exp(safe) if info_gain == "prob_diff" else safe, np.nan)

    order = table.time_order
    traj = table.traj_codes[order]
    same = traj[1:] == traj[:-1]  # sorted slot i and i+1 belong to one trajectory
    ig_sorted = np.full(n, np.nan)
    ig_sorted[:-1][same] = v[order][1:][same] - v[order][:-1][same]
    ig = np.empty(n)
    ig[order] = ig_sorted

    is_outcome = table.position == table.traj_lengths[table.traj_codes] - 1
    with np.errstate(invalid="ignore"):
        is_ig = ~is_outcome & np.isfinite(ig) & (ig != 0.0)
    reward = np.where(is_ig, np.nan_to_num(ig), 0.0)
    reward = np.where(is_outcome, episode_returns(table), reward)
    return reward, is_ig, is_outcome


def pool_zscore(values: np.ndarray, codes: np.ndarray, member: np.ndarray) -> np.ndarray:
    """(x - μ_g) / (σ_g + 1e-6) on `member` rows, 0 elsewhere, with IGPO's statistics (§4.2).

    μ_g, σ_g = sqrt(pop_var_g + 1e-8) over the member rows of group g; a group with ≤ 1 member has
    σ := 1 and μ = its own value, so its single member gets 0.
    """
    stats = group_stats(values, codes, ddof=0, rows=member, var_eps=_VAR_EPS)  # IGPO's compute_group_stats
    std = np.where(stats.count <= 1, 1.0, stats.std)
    return np.where(member, (values - stats.mean[codes]) / (std[codes] + _STD_EPS), 0.0)


def igpo_diagnostics(table: StepTable, *, info_gain: str = "prob_diff") -> dict[str, float]:
    """Probe coverage and IG statistics: probe/missing_frac (rows without a probe), ig/positions_frac
    (share of non-final turns that are IG reward positions), ig/mean and ig/abs_mean over them."""
    reward, is_ig, is_outcome = turn_rewards(table, info_gain)
    n_mid = int((~is_outcome).sum())
    ig = reward[is_ig]
    return {
        "probe/missing_frac": float(np.isnan(table.probe).mean()) if len(table) else 0.0,
        "ig/positions_frac": float(is_ig.sum() / n_mid) if n_mid else 0.0,
        "ig/mean": float(ig.mean()) if ig.size else 0.0,
        "ig/abs_mean": float(np.abs(ig).mean()) if ig.size else 0.0,
    }


InfoGain = Literal["prob_diff", "log_prob_diff"]


@dataclass
class IGPOOptions:
    gamma: float = option(1.0, "turn-level discount of A_t = r̂_t + γ A_{t+1} (1.0 in the authors' train.sh)",
                          ge=0, le=1)
    info_gain: InfoGain = option("prob_diff", "prob_diff: v = exp(ℓ) (code default and paper); "
                                 "log_prob_diff: v = ℓ (the released train.sh)")
    norm: Literal["joint", "separate"] = option(
        "joint", "joint: IG and outcome rewards pooled per task group (the paper); separate: the two pools "
        "normalised independently (the released train.sh)")
    ig_weight: float = option(1.0, "curriculum weight multiplied into the IG rewards before normalisation "
                              "(the authors' schedule moves it 1.0 -> 0.5)")
    outcome_weight: float = option(1.0, "curriculum weight multiplied into the outcome rewards before "
                                   "normalisation (the authors' schedule moves it 0.5 -> 1.0)")
    skipped_turns: Literal["zero", "inherit"] = option(
        "zero", "a turn without an IG reward (missing probe, IG exactly 0): zero = r̂ 0, still a discount step; "
        "inherit = takes the next turn's advantage, no discount step (the token implementation)")


@register_estimator("igpo", options=IGPOOptions, diagnostics=igpo_diagnostics, probe=True)
def igpo(table: StepTable, opt: IGPOOptions) -> np.ndarray:
    """Information-gain turn rewards plus the outcome, normalised per group, accumulated over turns (§4.1-4.2).

    Raises ValueError when no row has a probe.
    """
    gamma, info_gain, norm, skipped_turns = opt.gamma, opt.info_gain, opt.norm, opt.skipped_turns
    ig_weight, outcome_weight = opt.ig_weight, opt.outcome_weight
    if len(table) == 0:
        return np.zeros(0)
    require_probes(table, "igpo")
    reward, is_ig, is_outcome = turn_rewards(table, info_gain)
    reward = reward * np.where(is_ig, ig_weight, 1.0) * np.where(is_outcome, outcome_weight, 1.0)

    codes = table.group_codes
    if norm == "joint":
        normed = pool_zscore(reward, codes, is_ig | is_outcome)
    else:
        normed = pool_zscore(reward, codes, is_ig) + pool_zscore(reward, codes, is_outcome)

    steps = None if skipped_turns == "zero" else (is_ig | is_outcome)
    return discounted_sums(table, normed, gamma, steps)
