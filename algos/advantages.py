"""The pieces advantage estimators share (the registry is algos/registry.py).

Shared pieces (all vectorised over rows; references are to algorithms.md):
    discounted_returns   G_t = sum_k gamma^(k-t) r_k inside each trajectory (§1.1 step 1)
    episode_returns      R(tau) = sum_t r_t, copied onto every row of the trajectory (§0.1)
    group_stats          count, sum, mean, std (and min, max) within integer-coded groups: the one
                         place the estimators' group statistics are computed
    group_normalize      (x - mean_g) or (x - mean_g) / (std_u_g + eps) within integer-coded groups
    episode_advantages   the GRPO / GiGPO episode term incl. the invalid-action penalty (§1.1 steps 2-3, §0.7)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from algos.steptable import StepTable

NORM_MODES = ("mean_norm", "mean_std_norm")
STATS_OVER = ("steps", "trajs")
NormMode = Literal["mean_norm", "mean_std_norm"]
StatsOver = Literal["steps", "trajs"]


def discounted_returns(table: StepTable, gamma: float) -> np.ndarray:
    """Step returns G_t = sum_{k>=t} gamma^(k-t) r_k within each trajectory (§1.1 step 1)."""
    return discounted_sums(table, table.reward, gamma)


def discounted_sums(
    table: StepTable, values: np.ndarray, gamma: float, steps: np.ndarray | None = None
) -> np.ndarray:
    """sum_{k>=t} gamma^(k-t) x_k within each trajectory, for any per-row `values` x.

    The table holds only active steps; k runs over a trajectory's rows in turn order (gaps in the
    turn numbers are not discounted). Vectorised across trajectories: rows are sorted by
    (trajectory, turn) once, laid out as a zero-padded (n_trajs, max_T) matrix, and a backward pass
    over the T columns accumulates G[:, t] = x[:, t] + gamma * G[:, t+1].

    `steps` (bool per row, default all True): rows where it is False are not discount steps and
    take the next step's sum unchanged, G_t = G_{t+1} (IGPO's merged turn segments, §4.2).
    """
    n = len(table)
    if n == 0:
        return np.zeros(0)
    rows = table.time_order
    traj, pos = table.traj_codes[rows], table.position[rows]
    shape = (table.n_trajs, int(table.traj_lengths.max()))
    x = np.zeros(shape)
    x[traj, pos] = np.asarray(values, dtype=np.float64)[rows]
    is_step = np.ones(shape, dtype=bool)
    if steps is not None:
        is_step[traj, pos] = np.asarray(steps, dtype=bool)[rows]
    sums = np.zeros(shape)
    running = np.zeros(table.n_trajs)
    for t in range(shape[1] - 1, -1, -1):  # loop over time, not rows; padding cells add 0
        running = np.where(is_step[:, t], x[:, t] + gamma * running, running)
        sums[:, t] = running
    out = np.empty(n)
    out[rows] = sums[traj, pos]
    return out


def episode_returns(table: StepTable) -> np.ndarray:
    """R(tau) = sum_t r_t of each row's trajectory, copied onto each of its rows (§0.1, §0.3)."""
    per_traj = np.bincount(table.traj_codes, weights=table.reward, minlength=table.n_trajs)
    return per_traj[table.traj_codes]


def apply_invalid_penalty(values: np.ndarray, table: StepTable, penalty: float) -> np.ndarray:
    """`values - penalty` on rows with an invalid action, unchanged elsewhere (§1.1 step 2).

    Applied after returns are computed and only to the offending row (not propagated backwards).
    """
    if penalty == 0.0:
        return values
    return values - penalty * (~table.valid)


@dataclass(frozen=True)
class GroupStats:
    """Per-group statistics of `values` over integer codes 0..k-1, each array of length k."""

    count: np.ndarray  # members (float when `rows` weights them)
    total: np.ndarray  # sum of the members' values
    mean: np.ndarray  # total / count (0 for an empty group)
    std: np.ndarray  # sqrt(sum of squared deviations / max(count - ddof, 1) + var_eps)
    lo: np.ndarray | None  # min and max of the members (with extremes=True): a flat group has lo == hi
    hi: np.ndarray | None


def group_stats(values: np.ndarray, codes: np.ndarray, *, ddof: int, rows: np.ndarray | None = None,
                var_eps: float = 0.0, n_groups: int | None = None, extremes: bool = False) -> GroupStats:
    """Count, sum, mean and std of `values` within each group of `codes`, vectorised with bincount.

    The estimators differ in exactly these choices, so each call site names them: `ddof` 1 (unbiased,
    verl and GRPO's torch.std) or 0 (population, HGPO's and IGPO's code); `var_eps` added inside the
    square root (IGPO's 1e-8); `rows` (bool per value) the members the statistics are taken over,
    while the others stay in their group; `extremes` also returns each group's min and max.
    """
    values = np.asarray(values, dtype=np.float64)
    k = int(codes.max(initial=-1)) + 1 if n_groups is None else n_groups
    w = None if rows is None else np.asarray(rows, dtype=np.float64)
    count = np.bincount(codes, weights=w, minlength=k)
    total = np.bincount(codes, weights=values if w is None else w * values, minlength=k)
    mean = total / np.maximum(count, 1)
    sq = (values - mean[codes]) ** 2
    std = np.sqrt(np.bincount(codes, weights=sq if w is None else w * sq, minlength=k) / np.maximum(count - ddof, 1)
                  + var_eps)
    lo = hi = None
    if extremes:
        member = slice(None) if rows is None else np.asarray(rows, dtype=bool)
        lo, hi = np.full(k, np.inf), np.full(k, -np.inf)
        np.minimum.at(lo, codes[member], values[member])
        np.maximum.at(hi, codes[member], values[member])
    return GroupStats(count, total, mean, std, lo, hi)


def group_normalize(
    values: np.ndarray,
    codes: np.ndarray,
    *,
    mode: str,
    eps: float = 1e-6,
    singleton: Literal["zero_mean", "own_value"] = "zero_mean",
    stats_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise `values` within the groups given by integer `codes` (0..k-1).

    mean_norm:      values - mu_g
    mean_std_norm:  (values - mu_g) / (std_u_g + eps)        (std_u: unbiased, divides by n-1)

    mu_g and std_u_g are taken over the rows where `stats_rows` is True (all rows by default) and
    applied to every row of the group. A group with one statistics row has sigma = 1 and
      singleton="zero_mean": mu = 0, so the advantage is the value itself (GRPO / episode term, §1.1 step 3)
      singleton="own_value": mu = the row's own value, so the advantage is 0 (GiGPO step term, §1.1 step 5).
    Vectorised with np.bincount over the codes.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"unknown normalisation mode {mode!r}; expected one of {NORM_MODES}")
    values = np.asarray(values, dtype=np.float64)
    stats = group_stats(values, codes, ddof=1, rows=stats_rows)
    count, mean, std = stats.count, stats.mean.copy(), stats.std.copy()
    dev = values - mean[codes]

    single = count <= 1
    std[single] = 1.0
    if singleton == "zero_mean":
        mean[single] = 0.0
        centred = values - mean[codes]
    elif singleton == "own_value":
        centred = np.where(single[codes], 0.0, dev)
    else:
        raise ValueError(f"singleton must be 'zero_mean' or 'own_value', got {singleton!r}")

    if mode == "mean_norm":
        return centred
    return centred / (std[codes] + eps)


def episode_advantages(
    table: StepTable,
    *,
    mode: str,
    episode_stats_over: str = "steps",
    invalid_penalty: float = 0.0,
    eps: float = 1e-6,
) -> np.ndarray:
    """The episode (macro) advantage A_E of GRPO and GiGPO (§1.1 steps 2-3, §0.7).

    R_row = R(tau) of the row's trajectory, minus `invalid_penalty` on rows with an invalid action.
    Statistics per task group:
      episode_stats_over="steps": mu, std_u over the multiset {R_row} of the group's step rows (a
        trajectory with T steps counts T times) - verl-agent's default; one row -> mu=0, sigma=1.
      episode_stats_over="trajs": each trajectory counts once (the papers' equations), with the
        R_row of its first turn (what verl-agent's `compute_mean_std_cross_steps=False` pools for
        time-ordered batches); one trajectory -> mu=0, sigma=1.
    A_E = R_row - mu (mean_norm) or (R_row - mu) / (sigma + eps) (mean_std_norm).
    """
    if episode_stats_over not in STATS_OVER:
        raise ValueError(f"episode_stats_over must be one of {STATS_OVER}, got {episode_stats_over!r}")
    r_row = apply_invalid_penalty(episode_returns(table), table, invalid_penalty)
    stats_rows = None if episode_stats_over == "steps" else table.position == 0
    return group_normalize(r_row, table.group_codes, mode=mode, eps=eps, singleton="zero_mean", stats_rows=stats_rows)


# ---------------------------------------------------------------------------------------------
# diagnostics


def advantage_diagnostics(table: StepTable, advantages: np.ndarray) -> dict[str, float]:
    """Estimator-independent batch statistics for logging.

    adv/{mean,std,min,max,zero_frac}; batch/{rows,groups,trajs,invalid_frac};
    group/mean_trajs (trajectories per group); group/uniform_return_frac (share of groups whose
    trajectories all have the same episode return, i.e. no episode-level signal).
    """
    adv = np.asarray(advantages, dtype=np.float64)
    n = len(table)
    out = {
        "batch/rows": float(n),
        "batch/groups": float(table.n_groups),
        "batch/trajs": float(table.n_trajs),
        "batch/invalid_frac": float((~table.valid).mean()) if n else 0.0,
    }
    if n == 0:
        return out | {"adv/mean": 0.0, "adv/std": 0.0, "adv/min": 0.0, "adv/max": 0.0, "adv/zero_frac": 0.0,
                      "group/mean_trajs": 0.0, "group/uniform_return_frac": 0.0}
    kept = adv[~np.isnan(adv)]  # NaN marks rows an estimator leaves out of training (MC-GRPO's pivot)
    out["adv/dropped_frac"] = 1.0 - len(kept) / n
    out |= {"adv/mean": 0.0, "adv/std": 0.0, "adv/min": 0.0, "adv/max": 0.0, "adv/zero_frac": 0.0}
    if len(kept):
        out |= {
            "adv/mean": float(kept.mean()),
            "adv/std": float(kept.std()),
            "adv/min": float(kept.min()),
            "adv/max": float(kept.max()),
            # 1e-8, not exact zero: normalising equal returns leaves float residue (~1e-17 / eps ~ 1e-11)
            "adv/zero_frac": float((np.abs(kept) < 1e-8).mean()),
        }
    # per trajectory: its group and its return; per group: max - min of the returns
    traj_group = np.zeros(table.n_trajs, dtype=np.int64)
    traj_group[table.traj_codes] = table.group_codes
    traj_return = np.bincount(table.traj_codes, weights=table.reward, minlength=table.n_trajs)
    stats = group_stats(traj_return, traj_group, ddof=1, n_groups=table.n_groups, extremes=True)
    out["group/mean_trajs"] = table.n_trajs / table.n_groups
    out["group/uniform_return_frac"] = float(np.mean(stats.hi - stats.lo <= 1e-12))
    return out
