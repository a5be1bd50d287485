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

from dataclasses import dataclass

import numpy as np

from algos.advantages import (
    NormMode,
    StatsOver,
    apply_invalid_penalty,
    discounted_returns,
    episode_advantages,
    group_normalize,
)
from algos.registry import option, register_estimator
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


@dataclass
class GiGPOOptions:
    gamma: float = option(0.95, "discount of the step returns G_t (0.95 in every GiGPO script)", ge=0, le=1)
    mode: NormMode = option("mean_norm", "normalisation of both terms: mean_norm (the Sokoban and WebShop "
                            "scripts) or mean_std_norm (ALFWorld, search)")
    step_advantage_w: float = option(1.0, "weight w of the step term, A = A_E + w * A_S", ge=0)
    episode_stats_over: StatsOver = option(
        "steps", "pooling of the episode term's statistics: steps (verl-agent) or trajs (paper Eq. 3), §0.7")
    invalid_penalty: float = option(0.1, "subtracted from G_t and R of rows whose action was invalid, after "
                                    "the returns are computed (the verl-agent scripts use 0.1)", ge=0)
    enable_similarity: bool = option(False, "group similar anchors, not only equal ones: text by difflib ratio, "
                                     "image anchors by their 16x16 thumbnails, image vs text never")
    similarity_thresh: float = option(
        0.95, "similarity threshold (the Search-R1 script uses 0.9); for images 1 - thresh bounds the mean "
        "absolute thumbnail difference, so images usually want ~0.999", ge=0, le=1)
    eps: float = option(1e-6, "added to the std in the denominators", ge=0)


def gigpo_terms(table: StepTable, opt: GiGPOOptions) -> dict[str, np.ndarray]:
    """The two parts of GiGPO's advantage, which add up to it: "episode" = A_E, "step" = w * A_S."""
    # §1.1 step 1-2: discounted step returns over the trajectory's steps, then the invalid penalty
    step_returns = apply_invalid_penalty(discounted_returns(table, opt.gamma), table, opt.invalid_penalty)

    # §1.1 step 2-3: episode advantage, normalised within the task group
    adv_episode = episode_advantages(table, mode=opt.mode, episode_stats_over=opt.episode_stats_over,
                                     invalid_penalty=opt.invalid_penalty, eps=opt.eps)

    # §1.1 step 4-5: step advantage within anchor-state groups; a singleton group gives 0
    codes = _step_groups(table, opt)
    adv_step = group_normalize(step_returns, codes, mode=opt.mode, eps=opt.eps, singleton="own_value")
    return {"episode": adv_episode, "step": opt.step_advantage_w * adv_step}


def _step_groups(table: StepTable, opt: GiGPOOptions) -> np.ndarray:
    return step_group_codes(table, enable_similarity=opt.enable_similarity,
                            similarity_thresh=opt.similarity_thresh)[0]


@register_estimator("gigpo", options=GiGPOOptions, diagnostics=gigpo_diagnostics, terms=gigpo_terms,
                    step_groups=_step_groups)
def gigpo(table: StepTable, opt: GiGPOOptions) -> np.ndarray:
    """Episode advantage plus w times the step advantage within anchor-state groups (algorithms.md §1.1)."""
    terms = gigpo_terms(table, opt)
    return terms["episode"] + terms["step"]  # §1.1 step 6
