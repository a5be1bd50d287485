"""GiGPO - Group-in-Group Policy Optimization (algorithms.md §1.1).

    A = A_E + w * A_S
    A_E: episode advantage, the trajectory's return normalised within its task group (steps 2-3)
    A_S: step advantage, the discounted step return G_t normalised within its anchor-state group:
         the rows of one task group whose anchors are equal (steps 1, 4-5)

Exact anchor grouping is vectorised over integer codes. The optional similarity grouping
(`enable_similarity`) clusters greedily: text anchors with difflib (a Python loop over distinct
texts), image anchors by their thumbnails (numpy over the task group, one pass per cluster).
"""

from __future__ import annotations

import numpy as np

from algos.advantages import (
    NORM_MODES,
    apply_invalid_penalty,
    discounted_returns,
    episode_advantages,
    group_normalize,
    register_estimator,
)
from algos.steptable import StepTable, combine_codes, similarity_codes


def step_group_codes(
    table: StepTable, *, enable_similarity: bool = False, similarity_thresh: float = 0.95
) -> tuple[np.ndarray, int]:
    """Anchor-state groups (§1.1 step 4): integer code per row and the number of groups.

    Exact (default): rows of the same task group with equal anchors share a group, regardless of
    turn or trajectory. Similarity: inside each task group, rows are visited in batch (row) order
    and join the first cluster whose representative (first member) has
    `anchor_similarity(text, representative) >= similarity_thresh`, else open a cluster: difflib's
    ratio for text, 1 - mean absolute thumbnail difference for image anchors, never image vs text
    (`algos.steptable.similarity_codes`).
    """
    if not enable_similarity:
        return combine_codes(table.group_codes, table.anchor_codes)
    return similarity_codes(table, similarity_thresh)


def gigpo_diagnostics(
    table: StepTable, *, enable_similarity: bool = False, similarity_thresh: float = 0.95
) -> dict[str, float]:
    """Anchor-group statistics to monitor (algorithms.md Appendix B.2: mostly-singleton groups mean
    the anchors carry history and the step term vanishes).

    step_group/count, step_group/mean_size (rows per step group, verl-agent's "Avg size of
    step-level group"), step_group/max_size, step_group/singleton_frac (share of rows alone in
    their step group, whose step advantage is 0).
    """
    codes, k = step_group_codes(table, enable_similarity=enable_similarity, similarity_thresh=similarity_thresh)
    if k == 0:
        return {"step_group/count": 0.0, "step_group/mean_size": 0.0, "step_group/max_size": 0.0,
                "step_group/singleton_frac": 0.0}
    sizes = np.bincount(codes, minlength=k)
    return {
        "step_group/count": float(k),
        "step_group/mean_size": float(sizes.mean()),
        "step_group/max_size": float(sizes.max()),
        "step_group/singleton_frac": float((sizes[codes] == 1).mean()),
    }


@register_estimator("gigpo", diagnostics=gigpo_diagnostics)
def gigpo(
    table: StepTable,
    *,
    gamma: float = 0.95,
    mode: str = "mean_norm",
    step_advantage_w: float = 1.0,
    episode_stats_over: str = "steps",
    invalid_penalty: float = 0.0,
    enable_similarity: bool = False,
    similarity_thresh: float = 0.95,
    eps: float = 1e-6,
) -> np.ndarray:
    """GiGPO advantage per step row (algorithms.md §1.1).

    Config:
        gamma: discount of the step returns G_t (0.95 in every GiGPO script).
        mode: "mean_norm" (config default; WebShop, Sokoban, ...) or "mean_std_norm" (ALFWorld,
            Search); used for both the episode and the step term.
        step_advantage_w: weight w of the step term, A = A_E + w * A_S.
        episode_stats_over: "steps" (default, verl-agent) or "trajs" (paper Eq. 3), see §0.7.
        invalid_penalty: subtracted from G_t and R_row of rows whose action was invalid, after the
            returns are computed (the verl-agent scripts use 0.1).
        enable_similarity: group similar anchors instead of only equal ones: text by difflib ratio,
            image anchors (envs.base.image_anchor) by their 16x16 thumbnails; image vs text never.
        similarity_thresh: similarity threshold (0.95 default; the Search-R1 script uses 0.9). For
            images, 1 - thresh bounds the mean absolute thumbnail difference in units of full
            brightness: small sprite moves score ~0.99, so images usually want ~0.999.
        eps: added to the std in the denominator.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"gigpo: mode must be one of {NORM_MODES}, got {mode!r}")

    # §1.1 step 1-2: discounted step returns over the trajectory's steps, then the invalid penalty
    step_returns = apply_invalid_penalty(discounted_returns(table, gamma), table, invalid_penalty)

    # §1.1 step 2-3: episode advantage, normalised within the task group
    adv_episode = episode_advantages(table, mode=mode, episode_stats_over=episode_stats_over,
                                     invalid_penalty=invalid_penalty, eps=eps)

    # §1.1 step 4-5: step advantage within anchor-state groups; a singleton group gives 0
    codes, _ = step_group_codes(table, enable_similarity=enable_similarity, similarity_thresh=similarity_thresh)
    adv_step = group_normalize(step_returns, codes, mode=mode, eps=eps, singleton="own_value")

    # §1.1 step 6
    return adv_episode + step_advantage_w * adv_step
