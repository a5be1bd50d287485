"""HGPO, RLOO, REINFORCE++, Dr.GRPO, MC-GRPO, GDPO and SALT against algorithms.md §2, §7, §12-§14,
plain loop references and the invariances each estimator must have."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

import algos  # noqa: F401  (registers the built-in estimators)
import algos.dr_grpo  # noqa: F401
import algos.gdpo  # noqa: F401
import algos.hgpo  # noqa: F401
import algos.mc_grpo  # noqa: F401
import algos.reinforce_pp  # noqa: F401
import algos.rloo  # noqa: F401
import algos.salt  # noqa: F401
from algos import StepTable, estimator_options
from tests.paper_options import compute_advantages, compute_diagnostics
from algos.hgpo import window_codes

TOL = 1e-4
FAMILY = ("hgpo", "rloo", "reinforce_pp", "dr_grpo", "mc_grpo", "gdpo", "salt")


def table_from(trajs, *, group="g", actions=None, components=None, **cols):
    """A StepTable from [(traj, anchors, rewards)] (one group) in trajectory-major time order.

    `actions` / `components`: per trajectory, a list with one entry per step.
    """
    rows = []
    for i, (traj, anchors, rewards) in enumerate(trajs):
        for turn, (anchor, reward) in enumerate(zip(anchors, rewards)):
            row = dict(group=group, traj=traj, turn=turn, reward=float(reward), anchor=anchor)
            if actions is not None:
                row["action"] = actions[i][turn]
            if components is not None:
                row["components"] = components[i][turn]
            rows.append(row)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    return StepTable(**columns, **cols)


def single_step(groups: dict, **kw) -> StepTable:
    """One-step trajectories: {group: [R_0, R_1, ...]}, traj ids 0..G-1 inside each group."""
    rows = [(g, i, r) for g, rs in groups.items() for i, r in enumerate(rs)]
    return StepTable(group=[g for g, _, _ in rows], traj=[i for _, i, _ in rows], turn=[0] * len(rows),
                     reward=[r for _, _, r in rows], anchor=["s"] * len(rows), **kw)


def random_table(seed: int, *, n_groups=4, min_trajs=2, max_trajs=5, max_len=5, n_anchors=3, n_actions=2,
                 int_rewards=False, n_components=2, str_ids=False) -> StepTable:
    """Random groups of trajectories, rows shuffled, turns with gaps (time order must come from `turn`)."""
    rng = np.random.RandomState(seed)
    rows = []
    for g in range(n_groups):
        for t in range(rng.randint(min_trajs, max_trajs + 1)):
            for pos in range(rng.randint(1, max_len + 1)):
                rows.append(dict(
                    group=f"task{g}" if str_ids else g,
                    traj=f"traj{t}" if str_ids else t,
                    turn=3 * pos + 1,
                    reward=float(rng.randint(0, 3)) if int_rewards else float(rng.normal()),
                    anchor=f"s{rng.randint(n_anchors)}",
                    action=f"a{rng.randint(n_actions)}",
                    valid=bool(rng.rand() > 0.2),
                    components=rng.randint(0, 2, size=n_components).astype(float),
                ))
    rows = [rows[i] for i in rng.permutation(len(rows))]
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    cols["components"] = np.stack(cols["components"])
    return StepTable(**cols)


def with_rewards(table: StepTable, reward: np.ndarray, components: np.ndarray | None = None) -> StepTable:
    return StepTable(group=table.group, traj=table.traj, turn=table.turn, reward=reward, anchor=table.anchor,
                     valid=table.valid, action=table.action,
                     components=table.components if components is None else components,
                     component_names=table.component_names)


def shift_group(table: StepTable, group, c: float, gamma: float = 1.0) -> StepTable:
    """Rewards of every trajectory of `group` shifted so that every step return G_t moves by exactly c:
    c on the final step, c * (1 - gamma) on the others (gamma = 1: c on the final step only, so the
    episode return R moves by c too)."""
    last = table.position == table.traj_lengths[table.traj_codes] - 1
    delta = np.where(last, c, c * (1.0 - gamma)) * (table.group == group)
    return with_rewards(table, table.reward + delta)


def assert_permutation_invariant(name: str, table: StepTable, seed: int = 0, **cfg) -> None:
    adv = compute_advantages(name, table, **cfg)
    perm = np.random.RandomState(seed).permutation(len(table))
    np.testing.assert_allclose(compute_advantages(name, table.take(perm), **cfg), adv[perm], atol=1e-10)


# ------------------------------------------------------------------------------------------------
# registry: names and defaults (algorithms.md sections cited in each module)


def test_registered_with_spec_defaults():
    # One default per option, the command line's: the verl-agent scripts' penalty of 0.1, HGPO's K
    # following env.history_length (None), REINFORCE++ with its group baseline.
    assert estimator_options("hgpo") == dict(gamma=0.95, history_length=None, mode="mean_std_norm",
                                             length_weight_alpha=1.0, base_group=False, invalid_penalty=0.1,
                                             episode_stats_over="steps", enable_similarity=False,
                                             similarity_thresh=0.95, eps=1e-6)
    assert estimator_options("rloo") == dict(invalid_penalty=0.1)
    assert estimator_options("reinforce_pp") == dict(gamma=1.0, baseline=True, eps=1e-6, invalid_penalty=0.1)
    assert estimator_options("dr_grpo") == dict(episode_stats_over="steps", invalid_penalty=0.1)
    assert estimator_options("mc_grpo") == dict(scale="mad", mad_eps=1e-3, eps=1e-6)
    assert estimator_options("gdpo") == dict(weights=None, eps=1e-4)
    assert estimator_options("salt") == dict(base="grpo", merge="prefix", eps=1e-6)


# ------------------------------------------------------------------------------------------------
# HGPO, algorithms.md §2.4 (one group, gamma 0.95, K = 2, alpha = 1, mean_std_norm)

SEC24_TRAJS = [
    ("h1", ["s0", "s1", "s2", "s3"], [0, 0, 0, 10]),
    ("h2", ["s0", "s1", "s2", "s2", "s3"], [0, 0, 0, 0, 10]),
    ("h3", ["s0", "s5", "s2", "s4"], [0, 0, 0, 0]),
    ("h4", ["s0", "s5", "s2", "s3"], [0, 0, 0, 10]),
]
SEC24_HGPO = [0.6158, 1.0000, 0.8958, 0.0, 0.4985, -1.0000, -0.6879, 0.5310, 0.0,
              -1.7301, -1.0000, -1.2217, 0.0, 0.6158, 1.0000, 0.8958, 0.0]
SEC24_HGPO_BASE = [0.5899, 0.9230, 0.8600, 0.5381, 0.5117, -0.7436, -0.5653, 0.5334, 0.5381,
                   -1.7364, -1.1248, -1.2744, -1.7489, 0.5899, 0.9230, 0.8600, 0.5381]
SEC24_GIGPO = [1.0714, 1.2452, 1.0131, 0.5381, 0.9698, -0.1690, 0.9000, 1.0131, 0.5381,
               -3.2472, -2.4561, -3.5357, -1.7489, 1.0714, 1.2452, 1.0131, 0.5381]


@pytest.fixture
def sec24():
    return table_from(SEC24_TRAJS)


def test_hgpo_sec24(sec24):
    np.testing.assert_allclose(compute_advantages("hgpo", sec24), SEC24_HGPO, atol=TOL)
    np.testing.assert_allclose(compute_advantages("hgpo", sec24, base_group=True), SEC24_HGPO_BASE, atol=TOL)
    # the GiGPO column of the same table (its mean_std_norm, omega = 1)
    np.testing.assert_allclose(compute_advantages("gigpo", sec24, mode="mean_std_norm"), SEC24_GIGPO, atol=TOL)


def test_hgpo_sec24_in_any_row_order(sec24):
    perm = np.random.RandomState(3).permutation(len(sec24))
    np.testing.assert_allclose(compute_advantages("hgpo", sec24.take(perm)), np.array(SEC24_HGPO)[perm], atol=TOL)


def test_hgpo_sec24_levels(sec24):
    levels = window_codes(sec24, 2)
    # rows 2 (h1 t2), 6 (h2 t2) and 7 (h2 t3) all sit on s2; h1 t2 and h2 t2 share their whole context
    assert levels[0][2] == levels[0][6] == levels[0][7]  # level 1: s2
    assert levels[1][2] == levels[1][6] != levels[1][7]  # level 2: (s1,s2), (s1,s2) vs (s2,s2)
    assert levels[2][2] == levels[2][6]  # level 3: (s0,s1,s2)
    assert (levels[1][[0, 4, 9, 13]] == -1).all() and (levels[2][[1, 5, 10, 14]] == -1).all()  # too early


def test_hgpo_k0_is_the_gigpo_step_term():
    # K = 0 keeps level 1 only (the anchor group); with mean_norm its single item is G - mu, so
    # A = 2 a_1 / (2 + eps) == GiGPO's mean_norm step term (whose singleton groups give 0 as well)
    table = random_table(5)
    gigpo_step = (compute_advantages("gigpo", table, mode="mean_norm")
                  - compute_advantages("grpo", table, mode="mean_norm"))
    hgpo = compute_advantages("hgpo", table, history_length=0, mode="mean_norm")
    np.testing.assert_allclose(hgpo, gigpo_step * 2 / (2 + 1e-6), atol=1e-9)


def reference_hgpo(table, gamma=0.95, K=2, mode="mean_std_norm", alpha=1.0, base_group=False, penalty=0.0,
                   eps=1e-6):
    """Dict-and-loop HGPO following the authors' code (time order from `turn`), base pooling over steps."""
    n = len(table)
    trajs = defaultdict(list)
    for i in range(n):
        trajs[(table.group[i], table.traj[i])].append(i)
    g_ret = np.zeros(n)
    clusters = defaultdict(list)
    for (grp, _), idx in trajs.items():
        idx = sorted(idx, key=lambda i: table.turn[i])
        running = 0.0
        for i in reversed(idx):
            running = table.reward[i] + gamma * running
            g_ret[i] = running
        hist = [table.anchor[i] for i in idx]
        for si, i in enumerate(idx):
            for k in range(1, min(K + 1, si + 1) + 1):
                clusters[(grp, k, tuple(hist[si - k + 1: si + 1]))].append(i)
    g_ret -= penalty * ~table.valid
    items = defaultdict(list)
    if base_group:
        ret = defaultdict(float)
        for i in range(n):
            ret[(table.group[i], table.traj[i])] += table.reward[i]
        r_row = [ret[(table.group[i], table.traj[i])] - (0.0 if table.valid[i] else penalty) for i in range(n)]
        pool = defaultdict(list)
        for i in range(n):
            pool[table.group[i]].append(r_row[i])
        for i in range(n):
            xs = pool[table.group[i]]
            if len(xs) == 1:
                a = r_row[i] if mode == "mean_norm" else r_row[i] / (1 + eps)
            elif max(xs) == min(xs):
                a = 0.0
            else:
                mu, sd = np.mean(xs), np.std(xs, ddof=1)
                a = r_row[i] - mu if mode == "mean_norm" else (r_row[i] - mu) / (sd + eps)
            items[i].append((0, a))
    for (_, k, _), members in clusters.items():
        if len(members) < 2:
            continue
        xs = g_ret[members]
        for i in members:
            if xs.max() == xs.min():
                a = 0.0
            elif mode == "mean_norm":
                a = g_ret[i] - xs.mean()
            else:
                a = (g_ret[i] - xs.mean()) / (xs.std() + eps)
            items[i].append((k, a))
    out = np.zeros(n)
    for i, its in items.items():
        kept = [(k, a) for k, a in its if a != 0]
        w = np.array([(k + 1.0) ** alpha for k, _ in kept])
        out[i] = sum(wk * a for wk, (_, a) in zip(w, kept)) / (w.sum() + eps) if kept else 0.0
    return out


@pytest.mark.parametrize("seed, cfg", [
    (0, {}),
    (1, dict(mode="mean_norm")),
    (2, dict(base_group=True)),
    (3, dict(base_group=True, mode="mean_norm", invalid_penalty=0.1)),
    (4, dict(history_length=0)),
    (5, dict(history_length=3, length_weight_alpha=0.0, gamma=0.9)),
    (6, dict(history_length=1, length_weight_alpha=2.0, invalid_penalty=0.5)),
])
def test_hgpo_matches_loop_reference(seed, cfg):
    table = random_table(seed, n_anchors=2)
    ref = reference_hgpo(table, gamma=cfg.get("gamma", 0.95), K=cfg.get("history_length", 2),
                         mode=cfg.get("mode", "mean_std_norm"), alpha=cfg.get("length_weight_alpha", 1.0),
                         base_group=cfg.get("base_group", False), penalty=cfg.get("invalid_penalty", 0.0))
    np.testing.assert_allclose(compute_advantages("hgpo", table, **cfg), ref, atol=1e-9)


def test_hgpo_flat_groups_give_exact_zero_items():
    # Three trajectories share (s0, s1) with the same final reward 0.1: every level group at t1 is
    # flat. Float means of 3 x 0.1 are not 0.1, so without exact zeros the spurious items at levels
    # 1 and 2 would survive and dilute the base item to A_E / 6 instead of A_E.
    assert np.mean([0.1, 0.1, 0.1]) != 0.1
    table = table_from([(f"t{i}", ["s0", "s1"], [r, 0.1]) for i, r in enumerate([0.0, 1.0, 3.0])])
    a_e = compute_advantages("grpo", table)
    adv = compute_advantages("hgpo", table, base_group=True)
    t1 = table.position == 1
    np.testing.assert_allclose(adv[t1], a_e[t1] / (1 + 1e-6), rtol=1e-12)
    # and a flat task group gives an exactly-zero base item
    flat = table_from([(f"t{i}", ["s0", f"x{i}"], [0.0, 0.1]) for i in range(3)])
    assert (compute_advantages("hgpo", flat, base_group=True) == 0.0).all()


@pytest.mark.parametrize("seed", range(3))
def test_hgpo_row_order_and_shift(seed):
    table = random_table(seed)
    for cfg in ({}, dict(base_group=True, invalid_penalty=0.1), dict(mode="mean_norm", history_length=3)):
        assert_permutation_invariant("hgpo", table, seed, **cfg)
    # every G_t of one group moved by the same constant: all level statistics are shift-invariant
    adv = compute_advantages("hgpo", table, gamma=0.95)
    np.testing.assert_allclose(compute_advantages("hgpo", shift_group(table, 1, 3.7, gamma=0.95), gamma=0.95),
                               adv, atol=1e-9)
    # with the base item, R must move by the same constant too, which with gamma = 1 it does
    adv = compute_advantages("hgpo", table, gamma=1.0, base_group=True)
    np.testing.assert_allclose(compute_advantages("hgpo", shift_group(table, 1, 3.7), gamma=1.0, base_group=True),
                               adv, atol=1e-9)


def test_hgpo_diagnostics(sec24):
    d = compute_diagnostics("hgpo", sec24)
    levels = window_codes(sec24, 2)
    grouped = []
    for codes in levels:
        sizes = defaultdict(int)
        for c in codes[codes >= 0]:
            sizes[c] += 1
        grouped.append(np.array([c >= 0 and sizes[c] >= 2 for c in codes]))
    n_items = np.sum(grouped, axis=0)
    assert d["hgpo/levels_per_row"] == pytest.approx(n_items.mean())
    assert d["hgpo/no_item_frac"] == pytest.approx(1 / 17)  # only h3 t3 (s4) is alone at every level
    assert d["hgpo/level3_frac"] == pytest.approx(4 / 17)  # (s0,s1,s2)x2 and (s0,s5,s2)x2
    assert compute_diagnostics("hgpo", sec24, history_length=0)["hgpo/levels_per_row"] == pytest.approx(16 / 17)


@pytest.mark.parametrize("cfg, match", [
    (dict(mode="std"), "hgpo: mode: 'std' is not allowed; choose one of"),
    (dict(gamma=1.5), r"hgpo: gamma=1.5 is out of range: it must be a finite number in \[0, 1\]"),
    (dict(history_length=-1), "history_length=-1 is out of range: it must be an integer >= 0"),
    (dict(history_length=1.5), "history_length: expected int, got 1.5"),
    (dict(episode_stats_over="rows"), "episode_stats_over: 'rows' is not allowed"),
    (dict(length_weight_alpha=float("nan")), "length_weight_alpha"),
])
def test_hgpo_bad_options(sec24, cfg, match):
    with pytest.raises(ValueError, match=match):
        compute_advantages("hgpo", sec24, **cfg)


# ------------------------------------------------------------------------------------------------
# RLOO


def test_rloo_worked_example():
    table = single_step({"a": [1, 0, 0, 1], "b": [1, 1, 1, 0]})
    # a: 1 - (0+0+1)/3 = 2/3, 0 - 2/3; b: 1 - 2/3 = 1/3, 0 - 1 = -1
    np.testing.assert_allclose(compute_advantages("rloo", table), [2 / 3, -2 / 3, -2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, -1],
                               atol=1e-12)


def test_rloo_counts_trajectories_once_and_broadcasts():
    table = table_from([("t0", ["a", "b", "c"], [0, 0, 1]), ("t1", ["a"], [0]), ("t2", ["a", "b"], [0.5, 0])])
    # R = 1, 0, 0.5: t0 -> 1 - 0.25, t1 -> 0 - 0.75, t2 -> 0.5 - 0.5
    np.testing.assert_allclose(compute_advantages("rloo", table), [0.75] * 3 + [-0.75] + [0.0] * 2, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_rloo_is_scaled_mean_centring(seed):
    # A_i = G / (G-1) * (R_i - mean_g R): RLOO is Dr.GRPO over trajectories scaled by G / (G-1)
    table = random_table(seed)
    trajs = defaultdict(float)
    members = defaultdict(set)
    for g, t, r in zip(table.group, table.traj, table.reward):
        trajs[(g, t)] += r
        members[g].add(t)
    expected = []
    for g, t in zip(table.group, table.traj):
        rs = [trajs[(g, u)] for u in members[g]]
        n = len(rs)
        expected.append(n / (n - 1) * (trajs[(g, t)] - np.mean(rs)))
    np.testing.assert_allclose(compute_advantages("rloo", table), expected, atol=1e-10)
    dr = compute_advantages("dr_grpo", table, episode_stats_over="trajs")
    scale = np.array([len(members[g]) / (len(members[g]) - 1) for g in table.group])
    np.testing.assert_allclose(compute_advantages("rloo", table), scale * dr, atol=1e-10)


def test_rloo_single_trajectory_and_penalty():
    table = table_from([("t0", ["a", "b"], [1, 2])], valid=[True, False])
    np.testing.assert_allclose(compute_advantages("rloo", table), [0.0, 0.0])  # no baseline -> 0
    np.testing.assert_allclose(compute_advantages("rloo", table, invalid_penalty=0.1), [0.0, -0.1])
    two = table_from([("t0", ["a", "b"], [1, 0]), ("t1", ["a"], [0])], valid=[True, False, True])
    # the penalty stays on the offending row; the other trajectory's baseline is unchanged
    np.testing.assert_allclose(compute_advantages("rloo", two, invalid_penalty=0.1), [1.0, 0.9, -1.0], atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_rloo_row_order_and_shift(seed):
    table = random_table(seed, str_ids=True)
    assert_permutation_invariant("rloo", table, seed, invalid_penalty=0.1)
    adv = compute_advantages("rloo", table)
    np.testing.assert_allclose(compute_advantages("rloo", shift_group(table, "task0", -2.5)), adv, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# REINFORCE++


def test_reinforce_pp_worked_example():
    # t0 rewards [0, 1], t1 [1], gamma 0.5: G = [0.5, 1 | 1]; whitened over the 3 rows with std_u
    table = table_from([("t0", ["a", "b"], [0, 1]), ("t1", ["a"], [1])])
    x = np.array([0.5, 1.0, 1.0])
    expected = (x - x.mean()) / (x.std(ddof=1) + 1e-6)
    np.testing.assert_allclose(expected, [-1.1547, 0.5774, 0.5774], atol=TOL)
    np.testing.assert_allclose(compute_advantages("reinforce_pp", table, gamma=0.5), expected, atol=1e-12)


def test_reinforce_pp_baseline_worked_example():
    # group A: R = 1 (two rows), 0; group B: R = 1, 1 -> x = R - mean_g = [.5, .5, -.5, 0, 0]
    a = table_from([("t0", ["a", "b"], [0, 1]), ("t1", ["a"], [0])], group="A")
    b = table_from([("t0", ["a"], [1]), ("t1", ["a"], [1])], group="B")
    table = StepTable(group=[*a.group, *b.group], traj=[*a.traj, *b.traj], turn=[*a.turn, *b.turn],
                      reward=[*a.reward, *b.reward], anchor=[*a.anchor, *b.anchor])
    x = np.array([0.5, 0.5, -0.5, 0.0, 0.0])
    expected = (x - x.mean()) / (x.std(ddof=1) + 1e-6)  # whitened like verl / OpenRLHF: mean 0.1 removed
    np.testing.assert_allclose(expected, [0.9562, 0.9562, -1.4343, -0.2390, -0.2390], atol=TOL)
    np.testing.assert_allclose(compute_advantages("reinforce_pp", table, baseline=True), expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_reinforce_pp_whitened_batch(seed):
    table = random_table(seed)
    for cfg in (dict(gamma=0.9), dict(baseline=True), dict(invalid_penalty=0.3)):
        adv = compute_advantages("reinforce_pp", table, **cfg)
        assert adv.mean() == pytest.approx(0.0, abs=1e-10)
        assert adv.std(ddof=1) == pytest.approx(1.0, abs=1e-5)
        assert_permutation_invariant("reinforce_pp", table, seed, **cfg)


def test_reinforce_pp_invariances():
    table = random_table(7)
    # without baseline: not group-relative - shifting one group's returns changes the advantages ...
    adv = compute_advantages("reinforce_pp", table, gamma=0.9)
    assert not np.allclose(compute_advantages("reinforce_pp", shift_group(table, 0, 2.0, 0.9), gamma=0.9), adv)
    # ... but moving every G_t of the batch by one constant does not (global whitening)
    shifted = table
    for g in range(table.n_groups):
        shifted = shift_group(shifted, g, 2.0, 0.9)
    np.testing.assert_allclose(compute_advantages("reinforce_pp", shifted, gamma=0.9), adv, atol=1e-9)
    # with baseline: group-relative
    adv = compute_advantages("reinforce_pp", table, baseline=True)
    np.testing.assert_allclose(compute_advantages("reinforce_pp", shift_group(table, 2, -4.0), baseline=True), adv,
                               atol=1e-9)


def test_reinforce_pp_singleton_group_uses_zero_baseline():
    table = single_step({"a": [1.0, 0.0], "b": [3.0]})
    x = np.array([0.5, -0.5, 3.0])  # group b has one trajectory: baseline 0 (verl)
    np.testing.assert_allclose(compute_advantages("reinforce_pp", table, baseline=True),
                               (x - x.mean()) / (x.std(ddof=1) + 1e-6), atol=1e-12)


@pytest.mark.parametrize("cfg, match", [
    (dict(gamma=1.5), "reinforce_pp: gamma=1.5 is out of range"),
    (dict(baseline=True, gamma=0.9), "gamma must be 1.0 with baseline=True"),
    (dict(baseline="maybe"), "baseline: expected bool, got 'maybe'"),
])
def test_reinforce_pp_bad_options(cfg, match):
    with pytest.raises(ValueError, match=match):
        compute_advantages("reinforce_pp", single_step({"a": [1, 0]}), **cfg)


# ------------------------------------------------------------------------------------------------
# Dr.GRPO, algorithms.md §12


def test_dr_grpo_sec12():
    table = single_step({"a": [1, 0, 0, 1], "b": [1, 1, 1, 0]})
    np.testing.assert_allclose(compute_advantages("dr_grpo", table),
                               [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75], atol=TOL)
    np.testing.assert_allclose(compute_advantages("grpo", table),
                               [0.8660, -0.8660, -0.8660, 0.8660, 0.5, 0.5, 0.5, -1.5], atol=TOL)


def test_dr_grpo_pooling_and_penalty():
    # t0: 2 rows, R=1; t1: 1 row, R=0. steps: mean over rows [1, 1, 0] = 2/3; trajs: mean 1/2
    table = table_from([("t0", ["a", "b"], [0, 1]), ("t1", ["a"], [0])], valid=[True, True, False])
    np.testing.assert_allclose(compute_advantages("dr_grpo", table), [1 / 3, 1 / 3, -2 / 3], atol=1e-12)
    np.testing.assert_allclose(compute_advantages("dr_grpo", table, episode_stats_over="trajs"), [0.5, 0.5, -0.5],
                               atol=1e-12)
    r_row = np.array([1.0, 1.0, -0.1])
    np.testing.assert_allclose(compute_advantages("dr_grpo", table, invalid_penalty=0.1), r_row - r_row.mean(),
                               atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_dr_grpo_row_order_and_shift(seed):
    table = random_table(seed)
    for cfg in ({}, dict(episode_stats_over="trajs"), dict(invalid_penalty=0.2)):
        assert_permutation_invariant("dr_grpo", table, seed, **cfg)
        adv = compute_advantages("dr_grpo", table, **cfg)
        np.testing.assert_allclose(compute_advantages("dr_grpo", shift_group(table, 3, 1.5), **cfg), adv, atol=1e-10)


def test_dr_grpo_bad_option():
    with pytest.raises(ValueError, match="dr_grpo: episode_stats_over: 'rows' is not allowed; choose one of 'steps', 'trajs'"):
        compute_advantages("dr_grpo", single_step({"a": [1, 0]}), episode_stats_over="rows")


# ------------------------------------------------------------------------------------------------
# MC-GRPO, algorithms.md §13.3


@pytest.mark.parametrize("rewards, pivot, expected", [
    ([1, 0, 0], 2, [1000, 0, None]),
    ([1, 1, 0], 0, [None, 0, -1000]),
    ([0.2, 0.9, 0.5], 2, [-0.9967, 1.3289, None]),
    ([1, 0, 1, 0, 0], 4, [1000, 0, 1000, 0, None]),
])
def test_mc_grpo_sec133(rewards, pivot, expected):
    adv = compute_advantages("mc_grpo", single_step({"g": rewards}))
    assert np.flatnonzero(np.isnan(adv)).tolist() == [pivot]
    keep = [i for i in range(len(rewards)) if i != pivot]
    np.testing.assert_allclose(adv[keep], [expected[i] for i in keep], atol=TOL)


def test_mc_grpo_scales_and_even_groups():
    table = single_step({"g": [0.2, 0.9, 0.5]})
    np.testing.assert_allclose(compute_advantages("mc_grpo", table, scale="none"), [-0.3, 0.4, np.nan], atol=1e-12)
    std = np.std([0.2, 0.9, 0.5], ddof=1) + 1e-6
    np.testing.assert_allclose(compute_advantages("mc_grpo", table, scale="std"), [-0.3 / std, 0.4 / std, np.nan],
                               atol=1e-12)
    np.testing.assert_allclose(compute_advantages("mc_grpo", table, mad_eps=0.0), [-1.0, 0.4 / 0.3, np.nan],
                               atol=1e-12)
    # even count: the lower-middle element (2 at idx 2) is median and pivot; MAD = lower middle of [1,1,0,2] = 1
    even = single_step({"g": [3, 1, 2, 4]})
    np.testing.assert_allclose(compute_advantages("mc_grpo", even), [1 / 1.001, -1 / 1.001, np.nan, 2 / 1.001],
                               atol=1e-12)


def test_mc_grpo_multi_step_groups_and_singletons():
    # R = 1, 0, 0.5 (sums over steps) -> median 0.5 is t2, whose two rows are NaN; group b has one trajectory
    a = table_from([("t0", ["a", "b"], [0, 1]), ("t1", ["a"], [0]), ("t2", ["a", "c"], [0.25, 0.25])], group="a")
    table = StepTable(group=[*a.group, "b"], traj=[*a.traj, "t0"], turn=[*a.turn, 0], reward=[*a.reward, 7.0],
                      anchor=[*a.anchor, "x"])
    adv = compute_advantages("mc_grpo", table, scale="none")
    np.testing.assert_allclose(adv, [0.5, 0.5, -0.5, np.nan, np.nan, np.nan], atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_mc_grpo_row_order_ties_and_shift(seed):
    # integer rewards make ties; the pivot among tied returns must not depend on the row order
    table = random_table(seed, int_rewards=True, min_trajs=3, max_trajs=6, str_ids=bool(seed % 2))
    for scale in ("mad", "std", "none"):
        assert_permutation_invariant("mc_grpo", table, seed, scale=scale)
        adv = compute_advantages("mc_grpo", table, scale=scale)
        assert np.array_equal(np.isnan(adv), np.isnan(compute_advantages("mc_grpo", shift_group(table, table.group[0],
                                                                                                 2.0), scale=scale)))
        np.testing.assert_allclose(compute_advantages("mc_grpo", shift_group(table, table.group[0], 2.0), scale=scale),
                                   adv, atol=1e-9)
    # exactly one pivot trajectory per group
    nan_trajs = {(g, t) for g, t, a in zip(table.group, table.traj, adv) if np.isnan(a)}
    assert len(nan_trajs) == table.n_groups and {g for g, _ in nan_trajs} == set(table.group)


def test_mc_grpo_unsortable_trajectory_ids_fall_back_to_batch_order():
    table = StepTable(group=[0, 0, 0], traj=["x", 1, (2, 3)], turn=[0, 0, 0], reward=[1.0, 1.0, 0.0],
                      anchor=["s"] * 3)
    np.testing.assert_allclose(compute_advantages("mc_grpo", table), [np.nan, 0.0, -1000.0], atol=1e-9)


@pytest.mark.parametrize("cfg, match", [
    (dict(scale="iqr"), "scale: 'iqr' is not allowed; choose one of 'mad', 'std', 'none'"),
    (dict(mad_eps=-1.0), "mad_eps=-1.0 is out of range: it must be a finite number >= 0"),
])
def test_mc_grpo_bad_options(cfg, match):
    with pytest.raises(ValueError, match=match):
        compute_advantages("mc_grpo", single_step({"g": [1, 0, 0]}), **cfg)


# ------------------------------------------------------------------------------------------------
# GDPO, algorithms.md §14.2


def gdpo_table(groups: dict, names=("correctness", "format")) -> StepTable:
    comps = [c for rs in groups.values() for c in rs]
    return single_step({g: [sum(c) for c in rs] for g, rs in groups.items()}, components=np.array(comps, float),
                       component_names=names)


def test_gdpo_sec142_g2():
    table = gdpo_table({"A": [(0, 0), (0, 1)], "B": [(0, 0), (1, 1)]})
    np.testing.assert_allclose(compute_advantages("gdpo", table), [-0.5477, 0.5477, -1.0954, 1.0954], atol=TOL)
    # GRPO on the summed reward (TRL's eps 1e-4) collapses both groups onto the same advantages
    np.testing.assert_allclose(compute_advantages("grpo", table, eps=1e-4), [-0.7070, 0.7070, -0.7070, 0.7070], atol=TOL)


def test_gdpo_sec142_g4():
    table = gdpo_table({"A": [(1, 1), (1, 0), (0, 1), (0, 0)], "B": [(1, 1), (0, 1), (0, 1), (0, 1)]})
    np.testing.assert_allclose(compute_advantages("gdpo", table),
                               [1.5274, 0, 0, -1.5274, 1.3227, -0.4409, -0.4409, -0.4409], atol=TOL)
    np.testing.assert_allclose(compute_advantages("grpo", table, eps=1e-4),
                               [1.2246, 0, 0, -1.2246, 1.4997, -0.4999, -0.4999, -0.4999], atol=TOL)


def test_gdpo_weights_multistep_and_records():
    # a trajectory's component is the sum over its rows; weights (1, 0) keep correctness only
    table = table_from([("t0", ["a", "b"], [0, 1]), ("t1", ["a"], [0]), ("t2", ["a"], [1])],
                       components=[[(0, 1), (1, 0)], [(0, 0)], [(0.5, 1)]])
    corr = np.array([1.0, 0.0, 0.5])
    z = (corr - corr.mean()) / (corr.std(ddof=1) + 1e-4)
    z = (z - z.mean()) / (z.std(ddof=1) + 1e-4)
    np.testing.assert_allclose(compute_advantages("gdpo", table, weights=(1.0, 0.0)), z[[0, 0, 1, 2]], atol=1e-12)
    # from_records: sub-reward dicts become columns in sorted-name order (format, length)
    recs = [dict(group_id="g", traj_id=i, turn=0, reward=0.0, anchor="s", components={"length": ln, "format": f})
            for i, (f, ln) in enumerate([(1, 0), (0, 0), (1, 1)])]
    rec_table = StepTable.from_records(recs)
    assert rec_table.component_names == ("format", "length")
    fmt_only = compute_advantages("gdpo", rec_table, weights=[1.0, 0.0])
    f = np.array([1.0, 0.0, 1.0])
    z = (f - f.mean()) / (f.std(ddof=1) + 1e-4)
    np.testing.assert_allclose(fmt_only, (z - z.mean()) / (z.std(ddof=1) + 1e-4), atol=1e-12)


def test_gdpo_single_trajectory_group_is_zero():
    table = gdpo_table({"A": [(0, 0), (1, 1)], "B": [(1, 0)]})
    pre = np.array([-1, 1, 0]) * 2 * 0.5 / (np.sqrt(0.5) + 1e-4)  # B's components normalise to 0
    np.testing.assert_allclose(compute_advantages("gdpo", table), (pre - pre.mean()) / (pre.std(ddof=1) + 1e-4),
                               atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_gdpo_row_order_and_shift(seed):
    table = random_table(seed, n_components=3)
    assert_permutation_invariant("gdpo", table, seed)
    assert_permutation_invariant("gdpo", table, seed, weights=(1.0, 0.5, 2.0))
    adv = compute_advantages("gdpo", table)
    # adding a constant to one component of every trajectory of one group (on its last row)
    last = table.position == table.traj_lengths[table.traj_codes] - 1
    comps = table.components.copy()
    comps[last & (table.group == 1), 1] += 5.0
    np.testing.assert_allclose(compute_advantages("gdpo", with_rewards(table, table.reward, comps)), adv, atol=1e-9)
    # the final batch z-score also makes the result invariant to a positive rescaling of all weights
    np.testing.assert_allclose(compute_advantages("gdpo", table, weights=(3.0, 3.0, 3.0)), adv, rtol=1e-3)  # up to eps


def test_gdpo_errors():
    with pytest.raises(ValueError, match=r"gdpo needs named sub-rewards: the env must put info\['reward_components'\]"):
        compute_advantages("gdpo", single_step({"a": [1, 0]}))
    table = gdpo_table({"A": [(0, 0), (0, 1)]})
    with pytest.raises(ValueError, match=r"weights has 3 entries .* 2 reward components \['correctness', 'format'\]"):
        compute_advantages("gdpo", table, weights=(1, 1, 1))
    with pytest.raises(ValueError, match="weights: expected list"):
        compute_advantages("gdpo", table, weights="11")


# ------------------------------------------------------------------------------------------------
# SALT, algorithms.md §7.2 (prefix merge)

SEC72 = [("t1", "abc", [0, 0, 1]), ("t2", "abd", [0, 0, 0]), ("t3", "ae", [0, 1]), ("t4", "f", [0])]


def sec72_table(with_actions=True):
    trajs = [(t, [f"o{k}" for k in range(len(acts))] if with_actions else list(acts), rs) for t, acts, rs in SEC72]
    return table_from(trajs, actions=[list(acts) for _, acts, _ in SEC72] if with_actions else None)


def test_salt_sec72():
    expected = [0.2887, 0.0, 0.8660, 0.2887, 0.0, -0.8660, 0.2887, 0.8660, -0.8660]
    np.testing.assert_allclose(compute_advantages("salt", sec72_table()), expected, atol=TOL)
    # without an action column the anchors alone key the edges (here they carry the same information)
    np.testing.assert_allclose(compute_advantages("salt", sec72_table(with_actions=False)), expected, atol=TOL)
    # RLOO base: A = [2/3, -2/3, 2/3, -2/3]; step a -> 2/9, a,b -> 0
    np.testing.assert_allclose(compute_advantages("salt", sec72_table(), base="rloo"),
                               [2 / 9, 0, 2 / 3, 2 / 9, 0, -2 / 3, 2 / 9, 2 / 3, -2 / 3], atol=1e-12)


def test_salt_state_merge_reconverges_and_counts_loops_once():
    # t1: (s0,x) (s1,y) R=1; t2: (s0,z) (s1,y) (s1,y) R=0 (loops on the same edge); t3: (s0,x) R=0
    trajs = [("t1", ["s0", "s1"], [0, 1]), ("t2", ["s0", "s1", "s1"], [0, 0, 0]), ("t3", ["s0"], [0])]
    table = table_from(trajs, actions=[["x", "y"], ["z", "y", "y"], ["x"]])
    a = compute_advantages("salt", table, base="rloo", merge="state")
    r = np.array([1.0, 0.0, 0.0])
    base = r - (r.sum() - r) / 2  # [1, -0.5, -0.5]
    # (s0,x): t1, t3; (s1,y): t1, t2 (t2 once, although it traverses the edge twice); (s0,z): t2
    edge_x, edge_y = (base[0] + base[2]) / 2, (base[0] + base[1]) / 2
    np.testing.assert_allclose(a, [edge_x, edge_y, base[1], edge_y, edge_y, edge_x], atol=1e-12)
    # the prefix tree does not merge t1's and t2's second steps (different histories)
    p = compute_advantages("salt", table, base="rloo")
    np.testing.assert_allclose(p, [edge_x, base[0], base[1], base[1], base[1], edge_x], atol=1e-12)


def reference_salt(table, base="grpo", merge="prefix", eps=1e-6):
    ret = defaultdict(float)
    members = defaultdict(list)
    for i in range(len(table)):
        key = (table.group[i], table.traj[i])
        if key not in ret:
            members[table.group[i]].append(key)
        ret[key] += table.reward[i]
    adv = {}
    for keys in members.values():
        rs = np.array([ret[k] for k in keys])
        for k, r in zip(keys, rs):
            if base == "rloo":
                adv[k] = 0.0 if len(rs) == 1 else r - (rs.sum() - r) / (len(rs) - 1)
            else:
                adv[k] = r / (1 + eps) if len(rs) == 1 else (r - rs.mean()) / (rs.std(ddof=1) + eps)
    steps = defaultdict(list)
    for i in range(len(table)):
        steps[(table.group[i], table.traj[i])].append(i)
    edge_of = {}
    for key, idx in steps.items():
        idx.sort(key=lambda i: table.turn[i])
        hist = []
        for t, i in enumerate(idx):
            step = (table.anchor[i], None if table.action is None else table.action[i])
            hist.append(step)
            edge_of[i] = (key[0], t, tuple(hist)) if merge == "prefix" else (key[0], step)
    travellers = defaultdict(set)
    for i, e in edge_of.items():
        travellers[e].add((table.group[i], table.traj[i]))
    return np.array([np.mean([adv[k] for k in travellers[edge_of[i]]]) for i in range(len(table))])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("base", ["grpo", "rloo"])
@pytest.mark.parametrize("merge", ["prefix", "state"])
def test_salt_matches_loop_reference_and_invariances(seed, base, merge):
    table = random_table(seed, n_anchors=2, n_actions=2, min_trajs=1)
    np.testing.assert_allclose(compute_advantages("salt", table, base=base, merge=merge),
                               reference_salt(table, base, merge), atol=1e-9)
    no_action = StepTable(group=table.group, traj=table.traj, turn=table.turn, reward=table.reward,
                          anchor=table.anchor)
    np.testing.assert_allclose(compute_advantages("salt", no_action, base=base, merge=merge),
                               reference_salt(no_action, base, merge), atol=1e-9)
    assert_permutation_invariant("salt", table, seed, base=base, merge=merge)
    # group-relative: shift a group with >= 2 trajectories (a lone trajectory's grpo base is R itself)
    g = next(g for g in range(table.n_groups) if len(set(table.traj[table.group == g])) >= 2)
    adv = compute_advantages("salt", table, base=base, merge=merge)
    np.testing.assert_allclose(compute_advantages("salt", shift_group(table, g, 1.25), base=base, merge=merge), adv,
                               atol=1e-9)


@pytest.mark.parametrize("cfg, match", [
    (dict(base="ppo"), "base: 'ppo' is not allowed; choose one of 'grpo', 'rloo'"),
    (dict(merge="anchor"), "merge: 'anchor' is not allowed"),
])
def test_salt_bad_options(cfg, match):
    with pytest.raises(ValueError, match=match):
        compute_advantages("salt", sec72_table(), **cfg)


# ------------------------------------------------------------------------------------------------
# the whole family


@pytest.mark.parametrize("name", [n for n in FAMILY if n != "gdpo"])
def test_empty_batch(name):
    empty = StepTable(group=[], traj=[], turn=[], reward=[], anchor=[])
    assert compute_advantages(name, empty).shape == (0,)


@pytest.mark.parametrize("name", FAMILY)
def test_finite_except_mc_grpo_pivots(name):
    table = random_table(11)
    adv = compute_advantages(name, table)
    if name == "mc_grpo":
        assert np.isnan(adv).sum() > 0
        adv = adv[~np.isnan(adv)]
    assert np.isfinite(adv).all() and math.isfinite(float(np.abs(adv).max()))
