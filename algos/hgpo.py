"""HGPO - Hierarchy-of-Groups Policy Optimization, code-faithful (algorithms.md §2.1).

A step row belongs to one group per history depth: level k (k = 1 .. K+1) keys the row by the
window of its last k anchors (h_{t-k+1}, ..., h_t) inside its task group, so level 1 is GiGPO's
anchor group and level K+1 is exactly the context the policy saw. Every level group with >= 2
members normalises the step returns G_t of its rows; a row's advantage is the (k+1)^alpha-weighted
mean of its non-zero level advantages (plus GiGPO's episode advantage as level 0 if `base_group`).

The authors' code walks the batch in row order and so needs time-ordered rows; here the windows are
read through `StepTable.time_order` / `position`, so rows may come in any order.

`enable_similarity` is our extension (the authors' HGPO has none; it mirrors GiGPO's §1.1 step 4
option): each anchor is first replaced by its similarity cluster inside the task group
(`algos.steptable.similarity_codes`: difflib for text, thumbnails for image anchors), and the
windows of every level are built from cluster ids, so near-identical states share level groups at
every depth. The clusters are greedy in batch order, so with it on the result depends on row order.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

from algos.advantages import (
    NormMode,
    StatsOver,
    apply_invalid_penalty,
    discounted_returns,
    episode_advantages,
    episode_returns,
    group_stats,
)
from algos.registry import option, register_estimator
from algos.steptable import StepTable, combine_codes, similarity_codes


def _check_history_length(history_length: int) -> None:
    if not isinstance(history_length, numbers.Integral) or isinstance(history_length, bool) or history_length < 0:
        raise ValueError(f"hgpo: history_length must be an int >= 0, got {history_length!r}")


def window_codes(
    table: StepTable, history_length: int, *, enable_similarity: bool = False, similarity_thresh: float = 0.95
) -> list[np.ndarray]:
    """Level keys of §2.1 step 1: for k = 1 .. K+1, an int64 code per row of the window of its last
    k anchors inside its task group, -1 where the row has fewer than k steps (position < k-1).

    Equal codes within a level <=> same task group and same anchor window; the time index is not
    part of the key. Built by extending the level-(k-1) code with the anchor k-1 steps back, read
    from a (trajectory, position) grid of anchor codes. With `enable_similarity` an anchor's code
    is its similarity cluster (see the module docstring) instead of its exact value.
    """
    _check_history_length(history_length)
    n = len(table)
    if n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(history_length + 1)]
    traj, pos = table.traj_codes, table.position
    # clusters are formed inside task groups, so the group part of the level-1 key is implied then
    anchors = similarity_codes(table, similarity_thresh)[0] if enable_similarity else table.anchor_codes
    grid = np.full((table.n_trajs, int(table.traj_lengths.max())), -1, dtype=np.int64)
    grid[traj, pos] = anchors

    code, _ = combine_codes(table.group_codes, anchors)
    levels = [code]
    for k in range(2, history_length + 2):
        rows = np.flatnonzero(pos >= k - 1)
        nxt = np.full(n, -1, dtype=np.int64)
        if rows.size:
            nxt[rows], _ = combine_codes(code[rows], grid[traj[rows], pos[rows] - (k - 1)])
        levels.append(nxt)
        code = nxt
    return levels


def _level_advantage(values: np.ndarray, codes: np.ndarray, mode: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(a_k, in_group) for one level (§2.1 step 2): rows with code -1 or in a singleton group get no item.

    a_k = G - mu (mean_norm) or (G - mu) / (std_p + eps) (mean_std_norm, population std as the code).
    In a group whose values are all equal the deviation is set to exactly 0: a float mean of n equal
    non-dyadic values (e.g. 3 x 9.025) need not equal them, and a spurious 1e-16 item would survive
    the "drop exact zeros" rule and change the weights of the row's other items.
    """
    rows = np.flatnonzero(codes >= 0)
    c = codes[rows]
    v = values[rows]
    stats = group_stats(v, c, ddof=0, extremes=True)  # population std, as the authors' code
    count = stats.count
    dev = np.where((stats.hi == stats.lo)[c], 0.0, v - stats.mean[c])
    a = dev
    if mode == "mean_std_norm":
        a = dev / (stats.std[c] + eps)  # a flat group's dev is 0 whatever its float residue of std

    out = np.zeros(len(values))
    in_group = np.zeros(len(values), dtype=bool)
    out[rows] = a
    in_group[rows] = count[c] >= 2
    return out, in_group


def _base_item(table: StepTable, *, mode: str, episode_stats_over: str, invalid_penalty: float,
               eps: float) -> np.ndarray:
    """GiGPO's episode advantage A_E (§2.1 step 3, std_u and row pooling as `episode_advantages`),
    exactly 0 on rows whose value equals a flat (>= 2 statistics rows, all equal) group's value,
    for the reason given in `_level_advantage`."""
    a_e = episode_advantages(table, mode=mode, episode_stats_over=episode_stats_over,
                             invalid_penalty=invalid_penalty, eps=eps)
    r_row = apply_invalid_penalty(episode_returns(table), table, invalid_penalty)
    pooled = None if episode_stats_over == "steps" else table.position == 0
    g = table.group_codes
    stats = group_stats(r_row, g, ddof=1, rows=pooled, n_groups=table.n_groups, extremes=True)
    flat = (stats.count >= 2) & (stats.hi == stats.lo)
    return np.where(flat[g] & (r_row == stats.lo[g]), 0.0, a_e)


def hgpo_diagnostics(
    table: StepTable, *, history_length: int = 2, enable_similarity: bool = False, similarity_thresh: float = 0.95
) -> dict[str, float]:
    """How much of the hierarchy a batch uses (level groups with >= 2 members):

    hgpo/levels_per_row: mean number of levels k >= 1 at which the row is in such a group (0 .. K+1);
    hgpo/no_item_frac: share of rows in no such group (advantage 0, or A_E alone with base_group);
    hgpo/level{k}_frac: share of rows grouped at level k (mostly 0 at high k means the windows
        rarely repeat and HGPO degenerates towards GiGPO's level-1 term).
    Counts ignore the "drop exact zeros" rule, which depends on the returns, not the grouping.
    """
    levels = window_codes(table, history_length, enable_similarity=enable_similarity,
                          similarity_thresh=similarity_thresh)
    n = len(table)
    out: dict[str, float] = {}
    n_items = np.zeros(n, dtype=np.int64)
    for k, codes in enumerate(levels, start=1):
        rows = codes >= 0
        sizes = np.bincount(codes[rows], minlength=int(codes.max(initial=-1)) + 1)
        grouped = np.zeros(n, dtype=bool)
        grouped[rows] = sizes[codes[rows]] >= 2
        n_items += grouped
        out[f"hgpo/level{k}_frac"] = float(grouped.mean()) if n else 0.0
    out["hgpo/levels_per_row"] = float(n_items.mean()) if n else 0.0
    out["hgpo/no_item_frac"] = float((n_items == 0).mean()) if n else 0.0
    return out


@dataclass
class HGPOOptions:
    gamma: float = option(0.95, "discount of the step returns G_t, computed as GiGPO's (0.95 in the scripts)",
                          ge=0, le=1)
    history_length: Optional[int] = option(
        None, "K, the history depth of the context groups (levels k = 1 .. K+1). It must equal the prompt "
        "memory env.history_length (§2.3); null takes it from there, a different value is a config error", ge=0)
    mode: NormMode = option("mean_std_norm", "mean_std_norm (ALFWorld; (G - mu) / (std_p + eps), population std "
                            "as the code) or mean_norm (WebShop; G - mu); also the mode of the base item")
    length_weight_alpha: float = option(1.0, "alpha of the level weights (k+1)^alpha; 0 = uniform")
    base_group: bool = option(False, "prepend GiGPO's episode advantage A_E as a level-0 item of weight 1 (§2.1 step 3)")
    invalid_penalty: float = option(0.1, "subtracted from G_t and from R (base item) of rows whose action was "
                                    "invalid, after the returns are computed (the scripts use 0.1)", ge=0)
    episode_stats_over: StatsOver = option("steps", "pooling of the base item's statistics: steps (the code) or "
                                           "trajs (§0.7); unused without base_group")
    enable_similarity: bool = option(False, "key the levels by similarity clusters of the anchors (text: difflib "
                                     "ratio, images: thumbnails), as GiGPO's option; our extension")
    similarity_thresh: float = option(0.95, "similarity threshold of enable_similarity", ge=0, le=1)
    eps: float = option(1e-6, "added to the std in the denominators and to the weight sum (one epsilon, as the code)",
                        ge=0)


@register_estimator("hgpo", options=HGPOOptions, diagnostics=hgpo_diagnostics,
                    follows={"history_length": "env.history_length"})
def hgpo(table: StepTable, opt: HGPOOptions) -> np.ndarray:
    """Weighted mean of the step advantages within the K+1 history-window groups (algorithms.md §2.1).

    A row at position t belongs to levels k <= t+1 only. Aggregation (§2.1 step 4): items (k, a_k)
    from level groups with >= 2 members (singletons are skipped), items exactly 0 dropped,
    A = sum_k (k+1)^alpha a_k / (sum_kept (k'+1)^alpha + eps); a row without items gets 0.
    """
    if opt.history_length is None:
        raise ValueError("hgpo: history_length=None means 'the prompt's env.history_length', which only the "
                         "trainer knows; pass the K the prompts were built with, e.g. history_length=2")
    gamma, mode, eps = opt.gamma, opt.mode, opt.eps
    step_returns = apply_invalid_penalty(discounted_returns(table, gamma), table, opt.invalid_penalty)
    num = np.zeros(len(table))
    den = np.zeros(len(table))
    if opt.base_group:
        a_e = _base_item(table, mode=mode, episode_stats_over=opt.episode_stats_over,
                         invalid_penalty=opt.invalid_penalty, eps=eps)
        kept = a_e != 0.0
        num += np.where(kept, a_e, 0.0)  # weight (0+1)^alpha = 1
        den += kept
    levels = window_codes(table, opt.history_length, enable_similarity=opt.enable_similarity,
                          similarity_thresh=opt.similarity_thresh)
    for k, codes in enumerate(levels, start=1):
        a_k, in_group = _level_advantage(step_returns, codes, mode, eps)
        kept = in_group & (a_k != 0.0)
        w = float(k + 1) ** opt.length_weight_alpha
        num += w * np.where(kept, a_k, 0.0)
        den += w * kept
    return num / (den + eps)
