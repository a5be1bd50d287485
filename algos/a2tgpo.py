"""A²TGPO - Agentic Turn-Group Policy Optimization with adaptive turn-level clipping (algorithms.md §5).

Our spec ([PAPER]/[RECON] in §5; no authors' code was available). Same turn rewards as IGPO
(§4.1, `algos.igpo.turn_rewards`: IG_t = v_{t+1} - v_t on non-final turns, R(τ) on the final one;
turns with a missing or exactly-zero IG are not reward positions), normalised differently:

    Ĩ_t  = IG_t z-scored within its turn group: same task group and same turn position t    (§5.1.1)
    Õ    = R(τ) z-scored within the task group (one outcome per trajectory)
           both with IGPO's convention: population std, σ = sqrt(var + 1e-8), (x - μ)/(σ + 1e-6),
           a singleton group gives 0
    A_t  = (Σ_{k=t}^{T-1} γ^{k-t} r̂_k) / sqrt(T - t)     (0-based rows: T - t accumulated terms) (§5.1.2)
    ε_t  = ε (1 + β (2 sigmoid(Ĩ_t) - 1)) on IG turns, ε on the final turn and turns without IG (§5.1.3)

Turn position is the row's rank in its trajectory's time order (`StepTable.position`), so gaps in
the `turn` numbers do not split turn groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from algos.advantages import discounted_sums
from algos.igpo import InfoGain, igpo_diagnostics, pool_zscore, require_probes, turn_rewards
from algos.registry import option, register_estimator
from algos.steptable import StepTable, combine_codes


def _normalised_rewards(table: StepTable, info_gain: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Ĩ on IG rows else 0, Õ on final rows else 0, is_ig)."""
    reward, is_ig, is_outcome = turn_rewards(table, info_gain)
    turn_groups, _ = combine_codes(table.group_codes, table.position)
    ig_tilde = pool_zscore(reward, turn_groups, is_ig)
    outcome = pool_zscore(reward, table.group_codes, is_outcome)
    return ig_tilde, outcome, is_ig


@dataclass
class A2TGPOOptions:
    gamma: float = option(1.0, "discount inside the accumulated sum Σ_k γ^(k-t) r̂_k", ge=0, le=1)
    info_gain: InfoGain = option("prob_diff", "prob_diff: v = exp(ℓ); log_prob_diff: v = ℓ, as in IGPO (§4.1)")
    clip_beta: float = option(0.3, "β of the adaptive turn-level clip range ε_t = ε(1 + β(2σ(Ĩ_t) − 1))", ge=0, le=1)
    clip: Optional[float] = option(None, "ε of the clip ranges: the PPO clip loss.clip_low, which it follows when "
                                   "null; without it (Python callers) no clip column is returned", ge=0)


@register_estimator("a2tgpo", options=A2TGPOOptions, diagnostics=igpo_diagnostics, probe=True,
                    follows={"clip": "loss.clip_low"})
def a2tgpo(table: StepTable, opt: A2TGPOOptions) -> dict[str, np.ndarray]:
    """Turn-group-normalised IG and outcome rewards, accumulated and rescaled by sqrt(T - t) (§5.1).

    Returns the advantage and, when `clip` is known, each turn's clip range for the loss (§5.1.3).
    Raises ValueError when no row has a probe.
    """
    if len(table) == 0:
        return {"advantage": np.zeros(0)}
    require_probes(table, "a2tgpo")
    ig_tilde, outcome, is_ig = _normalised_rewards(table, opt.info_gain)
    total = discounted_sums(table, ig_tilde + outcome, opt.gamma)
    # every later turn is a term, rewarded or not: the variance rescaling counts turns
    n_terms = table.traj_lengths[table.traj_codes] - table.position
    out = {"advantage": total / np.sqrt(n_terms)}
    if opt.clip is not None:
        out["clip"] = _clip_ranges(ig_tilde, is_ig, opt.clip, opt.clip_beta)
    return out


def _clip_ranges(ig_tilde: np.ndarray, is_ig: np.ndarray, clip: float, beta: float) -> np.ndarray:
    # 2 sigmoid(x) - 1 == tanh(x / 2), without overflow for large |x|
    return np.where(is_ig, clip * (1.0 + beta * np.tanh(ig_tilde / 2.0)), clip)


def a2tgpo_clip_ranges(
    table: StepTable, *, clip: float = 0.2, beta: float = 0.3, info_gain: str = "prob_diff"
) -> np.ndarray:
    """Per-row PPO clip range ε_t = ε (1 + β (2 sigmoid(Ĩ_t) - 1)) (algorithms.md §5.1.3).

    Ĩ_t is the row's turn-group-normalised IG; the final (answer) turn and turns without an IG get
    ε. Values lie in (ε(1-β), ε(1+β)). Symmetric: use ε_t for both the low and the high side.
    Raises ValueError when no row has a probe.
    """
    if len(table) == 0:
        return np.zeros(0)
    require_probes(table, "a2tgpo_clip_ranges")
    ig_tilde, _, is_ig = _normalised_rewards(table, info_gain)
    return _clip_ranges(ig_tilde, is_ig, clip, beta)
