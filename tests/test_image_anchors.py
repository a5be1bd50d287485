"""Image anchors (envs.base.image_anchor) and how GiGPO / HGPO group them: exactly by the pixel hash,
or by similarity of the thumbnail the anchor carries (algos.steptable.similarity_codes)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from algos import StepTable
from tests.paper_options import compute_advantages, compute_diagnostics
from algos.gigpo import step_group_codes
from algos.hgpo import window_codes
from algos.steptable import anchor_similarity, similarity_codes
from envs.base import THUMBNAIL_SIZE, anchor_thumbnail, image_anchor, image_thumbnail, is_image_anchor

EPS = 1e-6
KITCHEN = "You are in the kitchen. On the countertop 1 you see a mug, an apple and a knife."


def scene(square_at: tuple[int, int] = (8, 8), background: int = 40, size: int = 64) -> np.ndarray:
    """An RGB frame: a flat background with a bright 16x16 square, like a sprite on a floor."""
    img = np.full((size, size, 3), background, dtype=np.uint8)
    r, c = square_at
    img[r:r + 16, c:c + 16] = (230, 200, 60)
    return img


def one_pixel_off(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[40, 50] = 255 - out[40, 50]
    return out


BASE = scene()
NEAR = one_pixel_off(BASE)
FAR = scene(square_at=(40, 40), background=120)  # the sprite elsewhere on a lighter floor


def one_step_table(anchors: list[str], rewards: list[float], groups: list[str] | None = None) -> StepTable:
    """One single-step trajectory per anchor, so G_t = R = the reward and the hand maths stays short."""
    n = len(anchors)
    return StepTable(group=groups or ["g"] * n, traj=list(range(n)), turn=[0] * n, reward=rewards, anchor=anchors)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((np.equal.outer(a, a) == np.equal.outer(b, b)).all())


# ------------------------------------------------------------------------------------------------
# the anchor string and its thumbnail


def test_anchor_format_and_thumbnail_round_trip():
    anchor = image_anchor(BASE)
    prefix, sha, size, digits = anchor.split(":")
    assert (prefix, size) == ("img", f"t{THUMBNAIL_SIZE}") and len(sha) == 40
    assert len(digits) == THUMBNAIL_SIZE**2 and len(anchor) < 320
    assert is_image_anchor(anchor) and not is_image_anchor(KITCHEN)
    np.testing.assert_array_equal(anchor_thumbnail(anchor), image_thumbnail(BASE))
    # without a thumbnail: the old short key, still an image anchor, nothing to decode
    plain = image_anchor(BASE, thumbnail=None)
    assert plain == f"img:{sha}" and is_image_anchor(plain) and anchor_thumbnail(plain) is None
    assert anchor_thumbnail(KITCHEN) is None and anchor_thumbnail(anchor[:-1]) is None  # truncated thumbnail
    for shape in [(50, 70, 3), (5, 3, 3), (33, 33), (20, 20, 4), (1, 1, 1)]:
        img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        for side in (4, 16):
            thumb = anchor_thumbnail(image_anchor(img, thumbnail=side))
            assert thumb.shape == (side, side) and thumb.max() <= 15
            np.testing.assert_array_equal(thumb, image_thumbnail(img, side))


def test_thumbnail_is_block_mean_luma():
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[:, :16] = 255  # left half white
    img[:2, 16:18] = (255, 0, 0)  # one 2x2 red block: luma 0.299 -> level round(4.485) = 4
    thumb = image_thumbnail(img)
    assert (thumb[:, :8] == 15).all() and thumb[0, 8] == 4
    assert thumb[1:, 8:].sum() == 0 and thumb[0, 9:].sum() == 0
    np.testing.assert_array_equal(image_thumbnail(np.full((7, 9, 3), 136, np.uint8), 4), np.full((4, 4), 8))
    with pytest.raises(ValueError, match="shape"):
        image_thumbnail(np.zeros((4, 4, 2), dtype=np.uint8))


def test_pixel_hash_is_exact_and_thumbnail_similarity_is_perceptual():
    assert image_anchor(BASE) == image_anchor(BASE.copy())  # identical frames, identical anchors
    assert image_anchor(BASE) != image_anchor(NEAR)  # one pixel changes the sha1
    assert anchor_similarity(image_anchor(BASE), image_anchor(NEAR)) >= 1 - 1 / (15 * 256)
    assert anchor_similarity(image_anchor(BASE), image_anchor(FAR)) < 0.9
    # image vs text is never similar; text keeps difflib's ratio
    assert anchor_similarity(image_anchor(BASE), KITCHEN) == 0.0
    assert anchor_similarity(image_anchor(BASE), image_anchor(BASE, thumbnail=8)) == 0.0  # other size
    assert 0.9 < anchor_similarity(KITCHEN, KITCHEN.replace("knife", "knives")) < 1.0


# ------------------------------------------------------------------------------------------------
# grouping


def test_exact_and_similarity_step_groups():
    anchors = [image_anchor(f) for f in (BASE, BASE.copy(), NEAR, FAR)]
    table = one_step_table(anchors, [0, 0, 0, 0])
    exact, k = step_group_codes(table)
    assert k == 3 and exact[0] == exact[1] and exact[2] != exact[0]
    similar, k = step_group_codes(table, enable_similarity=True, similarity_thresh=0.999)
    assert k == 2 and similar[0] == similar[1] == similar[2] != similar[3]
    # similarity never crosses task groups
    split = one_step_table(anchors[:3], [0, 0, 0], groups=["a", "a", "b"])
    codes, k = similarity_codes(split, 0.999)
    assert k == 2 and codes[0] == codes[1] != codes[2]


def test_gigpo_step_advantage_uses_the_joined_group():
    # rows: BASE (R=1), NEAR (R=0), FAR (R=0), FAR again (R=1); mean_norm, one step each
    table = one_step_table([image_anchor(f) for f in (BASE, NEAR, FAR, FAR.copy())], [1, 0, 0, 1])
    cfg = dict(mode="mean_norm", step_advantage_w=1.0)
    # A_E = R - 0.5; exact: BASE and NEAR are singletons (A_S = 0), the FAR pair gets -+0.5
    np.testing.assert_allclose(compute_advantages("gigpo", table, **cfg), [0.5, -0.5, -1.0, 1.0], atol=1e-9)
    # similarity: BASE and NEAR form one group with mean 0.5, so their A_S is +-0.5 too
    got = compute_advantages("gigpo", table, enable_similarity=True, similarity_thresh=0.999, **cfg)
    np.testing.assert_allclose(got, [1.0, -1.0, -1.0, 1.0], atol=1e-9)
    diag = compute_diagnostics("gigpo", table, enable_similarity=True, similarity_thresh=0.999, **cfg)
    assert diag["step_group/count"] == 2.0 and diag["step_group/singleton_frac"] == 0.0


def test_hgpo_levels_use_the_joined_groups():
    # two trajectories (BASE, FAR) and (NEAR, FAR), rewards (0, 1) and (0, 0): G = (0.95, 1), (0, 0)
    a = [image_anchor(f) for f in (BASE, FAR, NEAR, FAR)]
    table = StepTable(group=["g"] * 4, traj=[0, 0, 1, 1], turn=[0, 1, 0, 1], reward=[0, 1, 0, 0], anchor=a)
    cfg = dict(history_length=1, mode="mean_norm", length_weight_alpha=1.0)
    # exact: level 1 groups only the FAR rows (+-0.5, weight 2); the level-2 windows differ
    exact = compute_advantages("hgpo", table, **cfg)
    np.testing.assert_allclose(exact, [0.0, 0.5 * 2 / (2 + EPS), 0.0, -0.5 * 2 / (2 + EPS)], atol=1e-9)
    # similarity: BASE ~ NEAR at level 1 (+-0.475, weight 2), and the windows (BASE, FAR) ~ (NEAR, FAR)
    # join at level 2 (+-0.5, weight 3): the FAR rows get (2*0.5 + 3*0.5) / (5 + eps)
    sim = compute_advantages("hgpo", table, enable_similarity=True, similarity_thresh=0.999, **cfg)
    want = [0.475 * 2 / (2 + EPS), 2.5 / (5 + EPS), -0.475 * 2 / (2 + EPS), -2.5 / (5 + EPS)]
    np.testing.assert_allclose(sim, want, atol=1e-9)
    level1, level2 = window_codes(table, 1, enable_similarity=True, similarity_thresh=0.999)
    assert level1[0] == level1[2] and level2[1] == level2[3] and level2[0] == level2[2] == -1
    diag = compute_diagnostics("hgpo", table, enable_similarity=True, similarity_thresh=0.999, **cfg)
    assert diag["hgpo/level1_frac"] == 1.0 and diag["hgpo/level2_frac"] == 0.5
    assert compute_diagnostics("hgpo", table, **cfg)["hgpo/level2_frac"] == 0.0


def test_clearly_different_frames_stay_apart():
    frames = [scene(square_at=(r, c)) for r in (0, 24, 48) for c in (0, 24, 48)]
    table = one_step_table([image_anchor(f) for f in frames], [0] * len(frames))
    _, k = similarity_codes(table, 0.95)
    assert k == len(frames)


def test_mixed_text_and_image_anchors():
    anchors = [KITCHEN, image_anchor(BASE), KITCHEN.replace("knife", "knives"), image_anchor(NEAR),
               image_anchor(BASE, thumbnail=None), "You are in the garden.", image_anchor(FAR)]
    table = one_step_table(anchors, [1, 0, 0, 1, 0, 1, 0])
    codes, _ = similarity_codes(table, 0.9)
    assert codes[0] == codes[2] and codes[1] == codes[3]  # near texts, near frames
    assert len({codes[0], codes[1], codes[4], codes[5], codes[6]}) == 5
    # however low the threshold, an image never joins a text (nor a thumbnail-less image anchor)
    codes, k = similarity_codes(table, 1e-9)
    assert k == 3 and codes[0] == codes[2] == codes[5] and codes[1] == codes[3] == codes[6] != codes[4]
    for name in ("gigpo", "hgpo"):
        adv = compute_advantages(name, table, enable_similarity=True, similarity_thresh=0.9)
        assert adv.shape == (7,) and np.isfinite(adv).all()


def test_vectorised_clusters_match_the_row_by_row_greedy_rule():
    """The one-pass-per-cluster clustering equals the spec's rule (each row, in batch order, joins the
    first cluster whose representative is similar enough) on a group of many noisy frames."""
    rng = np.random.default_rng(3)
    bases = [scene(square_at=tuple(rng.integers(0, 48, 2)), background=int(rng.integers(0, 200)))
             for _ in range(6)]
    frames = []
    for _ in range(300):
        noisy = bases[rng.integers(len(bases))].astype(np.int16) + rng.integers(-30, 31, (64, 64, 3))
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    anchors = [image_anchor(f) for f in frames]
    table = one_step_table(anchors, [0] * len(anchors))
    for thresh in (0.97, 0.99):
        reps: list[str] = []
        want = []
        for a in anchors:
            hit = next((j for j, rep in enumerate(reps) if anchor_similarity(a, rep) >= thresh), None)
            if hit is None:
                reps.append(a)
                hit = len(reps) - 1
            want.append(hit)
        start = time.perf_counter()
        got, k = similarity_codes(table, thresh)
        assert time.perf_counter() - start < 2.0
        assert k == len(reps) and same_partition(got, np.array(want))
