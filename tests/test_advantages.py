"""Advantage estimators: StepTable, the registry, GRPO and GiGPO against algorithms.md §1 and §3.4."""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections import defaultdict
from difflib import SequenceMatcher
from types import SimpleNamespace

import numpy as np
import pytest

from algos import (
    StepTable,
    discounted_returns,
    episode_advantages,
    episode_returns,
    estimator_options,
    gigpo_diagnostics,
    list_estimators,
    option,
    register_estimator,
)
from algos.advantages import apply_invalid_penalty
from tests.paper_options import compute_advantages, compute_diagnostics

TOL = 1e-4

# ------------------------------------------------------------------------------------------------
# algorithms.md §1.4 worked example

SEC14_TRAJS = [  # (group, traj, anchors, rewards)
    ("A", "t1", ["s0", "s1", "s2"], [0, 0, 10]),
    ("A", "t2", ["s0", "s1", "s1"], [0, 0, 0]),
    ("A", "t3", ["s0", "s3"], [0, 10]),
    ("B", "t4", ["u0", "u1"], [0, 0]),
    ("B", "t5", ["u0", "u2", "u1"], [0, 0, 10]),
    ("B", "t6", ["u0", "u1", "u1"], [0, 0, 0]),
]
SEC14_G = [9.025, 9.5, 10, 0, 0, 0, 9.5, 10, 0, 0, 9.025, 9.5, 10, 0, 0, 0]
# columns: A_E, A_S, A for mean_norm, then A_E, A_S, A for mean_std_norm
SEC14_TABLE = np.array([
    [3.75, 2.85, 6.6000, 0.7246, 0.5324, 1.2570],
    [3.75, 6.3333, 10.0833, 0.7246, 1.1547, 1.8793],
    [3.75, 0, 3.7500, 0.7246, 0, 0.7246],
    [-6.25, -6.175, -12.4250, -1.2076, -1.1536, -2.3612],
    [-6.25, -3.1667, -9.4167, -1.2076, -0.5774, -1.7850],
    [-6.25, -3.1667, -9.4167, -1.2076, -0.5774, -1.7850],
    [3.75, 3.325, 7.0750, 0.7246, 0.6211, 1.3457],
    [3.75, 0, 3.7500, 0.7246, 0, 0.7246],
    [-3.75, -3.0083, -6.7583, -0.7246, -0.5774, -1.3019],
    [-3.75, -2.5, -6.2500, -0.7246, -0.5, -1.2246],
    [6.25, 6.0167, 12.2667, 1.2076, 1.1547, 2.3623],
    [6.25, 0, 6.2500, 1.2076, 0, 1.2076],
    [6.25, 7.5, 13.7500, 1.2076, 1.5, 2.7076],
    [-3.75, -3.0083, -6.7583, -0.7246, -0.5774, -1.3019],
    [-3.75, -2.5, -6.2500, -0.7246, -0.5, -1.2246],
    [-3.75, -2.5, -6.2500, -0.7246, -0.5, -1.2246],
])
# §1.4, episode_stats_over="trajs": group A: t1, t3 -> 0.5774, t2 -> -1.1547; group B: t5 -> 1.1547, others -0.5774
SEC14_AE_TRAJS = [0.5774] * 3 + [-1.1547] * 3 + [0.5774] * 2 + [-0.5774] * 2 + [1.1547] * 3 + [-0.5774] * 3


def records_from(trajs, valid=None):
    """Row records (dicts) in trajectory-major, time order; `valid` maps (traj, turn) -> bool."""
    rows = []
    for group, traj, anchors, rewards in trajs:
        for turn, (anchor, reward) in enumerate(zip(anchors, rewards)):
            ok = True if valid is None else valid.get((traj, turn), True)
            rows.append(dict(group_id=group, traj_id=traj, turn=turn, reward=reward, anchor=anchor, valid=ok))
    return rows


@pytest.fixture
def sec14():
    return StepTable.from_records(records_from(SEC14_TRAJS))


def test_sec14_step_returns_and_episode_stats(sec14):
    np.testing.assert_allclose(discounted_returns(sec14, 0.95), SEC14_G, atol=TOL)
    r = episode_returns(sec14)[:8]  # group A rows: 10,10,10,0,0,0,10,10 -> mu 6.25, std_u 5.1755
    assert r.mean() == pytest.approx(6.25) and r.std(ddof=1) == pytest.approx(5.1755, abs=TOL)


@pytest.mark.parametrize("mode, col", [("mean_norm", 0), ("mean_std_norm", 3)])
def test_sec14_table(sec14, mode, col):
    a_e = episode_advantages(sec14, mode=mode)
    full = compute_advantages("gigpo", sec14, mode=mode)
    step_only = full - compute_advantages("gigpo", sec14, mode=mode, step_advantage_w=0.0)
    np.testing.assert_allclose(a_e, SEC14_TABLE[:, col], atol=TOL)
    np.testing.assert_allclose(step_only, SEC14_TABLE[:, col + 1], atol=TOL)
    np.testing.assert_allclose(full, SEC14_TABLE[:, col + 2], atol=TOL)
    # GRPO is GiGPO's episode term on its own
    np.testing.assert_allclose(compute_advantages("grpo", sec14, mode=mode), SEC14_TABLE[:, col], atol=TOL)


def test_sec14_defaults_are_the_scripts(sec14):
    # gigpo defaults: gamma 0.95, mean_norm, w 1, steps
    np.testing.assert_allclose(compute_advantages("gigpo", sec14), SEC14_TABLE[:, 2], atol=TOL)
    assert estimator_options("gigpo")["invalid_penalty"] == 0.1  # the verl-agent scripts; one default, CLI and Python
    assert estimator_options("grpo")["mode"] == "mean_std_norm"


def test_sec14_trajs_variant(sec14):
    a_e = episode_advantages(sec14, mode="mean_std_norm", episode_stats_over="trajs")
    np.testing.assert_allclose(a_e, SEC14_AE_TRAJS, atol=TOL)
    full = compute_advantages("gigpo", sec14, mode="mean_std_norm", episode_stats_over="trajs")
    np.testing.assert_allclose(full, np.array(SEC14_AE_TRAJS) + SEC14_TABLE[:, 4], atol=TOL)


def test_sec14_rows_in_any_order(sec14):
    perm = np.random.default_rng(0).permutation(len(sec14))
    shuffled = StepTable.from_records([records_from(SEC14_TRAJS)[i] for i in perm])
    for mode, col in (("mean_norm", 2), ("mean_std_norm", 5)):
        np.testing.assert_allclose(compute_advantages("gigpo", shuffled, mode=mode), SEC14_TABLE[perm, col], atol=TOL)


# ------------------------------------------------------------------------------------------------
# GRPO: algorithms.md §3.4 (turn-pooled GRPO over turn rows, and the per-trajectory paper variant)


def sec34_table():
    # query q: r1 (1 turn, R=1), r2 (2 turns, R=0), r3 (3 turns, R=1); query p: r4 (2 turns, R=0), r5 (1 turn, R=0)
    # the outcome is the last turn's reward
    trajs = [("q", "r1", 1, 1.0), ("q", "r2", 2, 0.0), ("q", "r3", 3, 1.0), ("p", "r4", 2, 0.0), ("p", "r5", 1, 0.0)]
    rows = []
    for g, t, n_turns, outcome in trajs:
        for k in range(n_turns):
            reward = outcome if k == n_turns - 1 else 0.0
            rows.append(dict(group_id=g, traj_id=t, turn=k, reward=reward, anchor=f"{t}{k}"))
    return StepTable.from_records(rows)


def test_grpo_sec34_turn_pooled_and_per_trajectory():
    table = sec34_table()
    steps = compute_advantages("grpo", table)  # rows: r1 | r2 r2 | r3 r3 r3 | r4 r4 | r5
    np.testing.assert_allclose(steps, [0.6455, -1.2910, -1.2910, 0.6455, 0.6455, 0.6455, 0, 0, 0], atol=TOL)
    trajs = compute_advantages("grpo", table, episode_stats_over="trajs")
    np.testing.assert_allclose(trajs, [0.5773, -1.1547, -1.1547, 0.5773, 0.5773, 0.5773, 0, 0, 0], atol=TOL)


def test_grpo_singletons():
    # §1.1 step 3: a group with one row uses mu = 0, sigma = 1 (the advantage is R itself)
    one_row = StepTable(group=["g"], traj=[0], turn=[0], reward=[3.0], anchor=["s"])
    assert compute_advantages("grpo", one_row) == pytest.approx([3.0 / (1 + 1e-6)])
    assert compute_advantages("grpo", one_row, mode="mean_norm") == pytest.approx([3.0])
    # one trajectory with three rows: not a singleton over steps (all equal -> 0) ...
    one_traj = StepTable(group=["g"] * 3, traj=[0] * 3, turn=[0, 1, 2], reward=[0, 0, 2.0], anchor=["a", "b", "c"])
    np.testing.assert_allclose(compute_advantages("grpo", one_traj), 0.0)
    # ... but a singleton over trajectories: mu = 0, sigma = 1
    np.testing.assert_allclose(compute_advantages("grpo", one_traj, episode_stats_over="trajs"), 2.0 / (1 + 1e-6))


def test_grpo_invalid_penalty_rule():
    # R_row -= penalty on the invalid row only, then steps-pooled statistics (§1.1 steps 2-3)
    table = StepTable(group=["g"] * 4, traj=[0, 0, 1, 1], turn=[0, 1, 0, 1], reward=[0, 1, 0, 0], anchor=list("abcd"),
                      valid=[True, False, True, True])
    r_row = np.array([1.0, 0.9, 0.0, 0.0])
    expected = (r_row - r_row.mean()) / (r_row.std(ddof=1) + 1e-6)
    np.testing.assert_allclose(compute_advantages("grpo", table, invalid_penalty=0.1), expected, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# plain reference implementations (loops and dicts, written from the rules of §1.1)


def reference_grpo(rows, mode="mean_std_norm", stats_over="steps", penalty=0.0, eps=1e-6):
    ret = defaultdict(float)
    for r in rows:
        ret[(r["group_id"], r["traj_id"])] += r["reward"]
    r_row = [ret[(r["group_id"], r["traj_id"])] - (0.0 if r["valid"] else penalty) for r in rows]
    first_turn = defaultdict(lambda: math.inf)
    for r in rows:
        key = (r["group_id"], r["traj_id"])
        first_turn[key] = min(first_turn[key], r["turn"])
    pool = defaultdict(list)  # "trajs": each trajectory enters through its first turn's R_row
    for i, r in enumerate(rows):
        if stats_over == "steps" or r["turn"] == first_turn[(r["group_id"], r["traj_id"])]:
            pool[r["group_id"]].append(r_row[i])
    out = []
    for i, r in enumerate(rows):
        xs = pool[r["group_id"]]
        mu, sd = (0.0, 1.0) if len(xs) == 1 else (float(np.mean(xs)), float(np.std(xs, ddof=1)))
        out.append(r_row[i] - mu if mode == "mean_norm" else (r_row[i] - mu) / (sd + eps))
    return np.array(out)


def reference_gigpo(rows, gamma=0.95, mode="mean_norm", w=1.0, stats_over="steps", penalty=0.0,
                    similarity=False, thresh=0.95, eps=1e-6):
    # step returns: walk each trajectory backwards in turn order
    by_traj = defaultdict(list)
    for i, r in enumerate(rows):
        by_traj[(r["group_id"], r["traj_id"])].append(i)
    g_ret = [0.0] * len(rows)
    for idx in by_traj.values():
        running = 0.0
        for i in sorted(idx, key=lambda j: rows[j]["turn"], reverse=True):
            running = rows[i]["reward"] + gamma * running
            g_ret[i] = running
    g_ret = [g - (0.0 if r["valid"] else penalty) for g, r in zip(g_ret, rows)]
    a_e = reference_grpo(rows, mode, stats_over, penalty, eps)
    # step groups: exact anchor, or greedy similarity clusters in batch order, inside each group
    key = []
    clusters = defaultdict(list)  # group -> representative texts
    for r in rows:
        if not similarity:
            key.append((r["group_id"], r["anchor"]))
            continue
        reps = clusters[r["group_id"]]
        for c, rep in enumerate(reps):
            if SequenceMatcher(None, r["anchor"], rep).ratio() >= thresh:
                key.append((r["group_id"], c))
                break
        else:
            reps.append(r["anchor"])
            key.append((r["group_id"], len(reps) - 1))
    members = defaultdict(list)
    for i, k in enumerate(key):
        members[k].append(g_ret[i])
    a_s = []
    for i, k in enumerate(key):
        xs = members[k]
        if len(xs) == 1:
            a_s.append(0.0)
            continue
        mu, sd = float(np.mean(xs)), float(np.std(xs, ddof=1))
        a_s.append(g_ret[i] - mu if mode == "mean_norm" else (g_ret[i] - mu) / (sd + eps))
    return a_e + w * np.array(a_s)


def random_rows(rng, n_groups=4, group_size=4, max_len=6, n_states=5, p_invalid=0.2, texts=False):
    """Random batch in random row order; anchors repeat inside a group (also across its trajectories)."""
    words = ["kitchen", "drawer 1", "drawer 2", "fridge", "apple", "mug", "countertop 3", "sink"]
    rows = []
    for g in range(n_groups):
        for t in range(group_size):
            length = int(rng.integers(1, max_len + 1))
            for k in range(length):
                s = int(rng.integers(n_states))
                anchor = (f"You are in the {words[s % len(words)]}. You see a {words[(s * 3) % len(words)]}."
                          + "!" * int(rng.integers(2)) if texts else f"s{s}")
                reward = float(rng.choice([0.0, 1.0, 10.0], p=[0.7, 0.2, 0.1]))
                rows.append(dict(group_id=f"g{g}", traj_id=t, turn=k, reward=reward, anchor=anchor,
                                 valid=bool(rng.random() >= p_invalid)))
    return [rows[i] for i in rng.permutation(len(rows))]


@pytest.mark.parametrize("seed", range(6))
def test_grpo_matches_reference(seed):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng)
    table = StepTable.from_records(rows)
    for mode in ("mean_norm", "mean_std_norm"):
        for stats_over in ("steps", "trajs"):
            for penalty in (0.0, 0.1):
                cfg = dict(mode=mode, episode_stats_over=stats_over, invalid_penalty=penalty)
                got = compute_advantages("grpo", table, **cfg)
                np.testing.assert_allclose(got, reference_grpo(rows, mode, stats_over, penalty), atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_gigpo_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    rows = random_rows(rng)
    table = StepTable.from_records(rows)
    for mode in ("mean_norm", "mean_std_norm"):
        for stats_over in ("steps", "trajs"):
            cfg = dict(gamma=0.9, mode=mode, step_advantage_w=0.5, episode_stats_over=stats_over, invalid_penalty=0.1)
            got = compute_advantages("gigpo", table, **cfg)
            want = reference_gigpo(rows, 0.9, mode, 0.5, stats_over, 0.1)
            np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("thresh", [0.8, 0.9, 0.95])
def test_gigpo_similarity_matches_reference(thresh):
    rng = np.random.default_rng(7)
    rows = random_rows(rng, texts=True)
    table = StepTable.from_records(rows)
    got = compute_advantages("gigpo", table, enable_similarity=True, similarity_thresh=thresh, mode="mean_std_norm")
    want = reference_gigpo(rows, mode="mean_std_norm", similarity=True, thresh=thresh)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_similarity_merges_near_duplicates_only():
    base = "You are in the kitchen. On the countertop 1 you see a mug, an apple and a knife."
    near = base.replace("knife", "knives")
    far = "You are in the garden. Nothing happens."
    table = StepTable(group=["g"] * 4, traj=[0, 0, 1, 1], turn=[0, 1, 0, 1], reward=[0, 1, 0, 0],
                      anchor=["a1", "a2", "a3", "a4"], text=[base, far, near, far + "!"])
    exact = gigpo_diagnostics(table)
    similar = gigpo_diagnostics(table, enable_similarity=True, similarity_thresh=0.9)
    assert exact["step_group/count"] == 4 and similar["step_group/count"] == 2
    with pytest.raises(ValueError, match="similarity_thresh"):
        compute_advantages("gigpo", table, enable_similarity=True, similarity_thresh=0.0)


# ------------------------------------------------------------------------------------------------
# randomised invariants


@pytest.mark.parametrize("seed", range(5))
def test_permuting_rows_permutes_output(seed):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng)
    table = StepTable.from_records(rows)
    perm = rng.permutation(len(rows))
    permuted = table.take(perm)
    for name, cfg in [("grpo", {}), ("grpo", dict(episode_stats_over="trajs", invalid_penalty=0.1)),
                      ("gigpo", dict(mode="mean_std_norm", invalid_penalty=0.1)),
                      ("gigpo", dict(episode_stats_over="trajs", gamma=0.8))]:
        np.testing.assert_allclose(compute_advantages(name, permuted, **cfg),
                                   compute_advantages(name, table, **cfg)[perm], atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_equal_returns_give_zero_episode_advantage(seed):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, p_invalid=0.0)
    # give every trajectory of group g0 the same episode return, spread differently over turns
    totals = defaultdict(list)
    for r in rows:
        totals[(r["group_id"], r["traj_id"])].append(r)
    for (g, _), steps in totals.items():
        if g == "g0":
            for r in steps:
                r["reward"] = 0.0
            steps[int(rng.integers(len(steps)))]["reward"] = 5.0
    table = StepTable.from_records(rows)
    in_g0 = table.group == "g0"
    for mode in ("mean_norm", "mean_std_norm"):
        for stats_over in ("steps", "trajs"):
            a_e = compute_advantages("grpo", table, mode=mode, episode_stats_over=stats_over)
            np.testing.assert_allclose(a_e[in_g0], 0.0, atol=1e-9)
            assert np.abs(a_e[~in_g0]).max() > 0


@pytest.mark.parametrize("seed", range(5))
def test_singleton_step_groups_get_zero_step_advantage(seed):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, n_states=12)
    table = StepTable.from_records(rows)
    key = list(zip(table.group, table.anchor))
    singleton = np.array([key.count(k) == 1 for k in key])
    assert singleton.any() and not singleton.all()
    for mode in ("mean_norm", "mean_std_norm"):
        cfg = dict(mode=mode, invalid_penalty=0.1)
        a_e = compute_advantages("gigpo", table, step_advantage_w=0.0, **cfg)
        a_s = compute_advantages("gigpo", table, **cfg) - a_e
        np.testing.assert_allclose(a_s[singleton], 0.0, atol=1e-12)
        assert np.abs(a_s[~singleton]).max() > 0


@pytest.mark.parametrize("seed", range(5))
def test_invalid_penalty_only_touches_the_offending_row(seed):
    rng = np.random.default_rng(seed)
    table = StepTable.from_records(random_rows(rng, n_groups=12, p_invalid=0.3))
    invalid = ~table.valid
    g, r = discounted_returns(table, 0.95), episode_returns(table)
    g_pen, r_pen = apply_invalid_penalty(g, table, 0.1), apply_invalid_penalty(r, table, 0.1)
    np.testing.assert_allclose((g - g_pen)[invalid], 0.1)
    np.testing.assert_allclose((r - r_pen)[invalid], 0.1)
    np.testing.assert_array_equal(g_pen[~invalid], g[~invalid])  # not propagated backwards
    np.testing.assert_array_equal(r_pen[~invalid], r[~invalid])
    # with mean_norm and per-trajectory statistics (each trajectory pooled through its first turn), the
    # advantage moves by exactly -0.1 on the invalid rows and nowhere else, in every group whose first
    # turns are all valid
    cfg = dict(mode="mean_norm", episode_stats_over="trajs")
    shift = compute_advantages("grpo", table, invalid_penalty=0.1, **cfg) - compute_advantages("grpo", table, **cfg)
    first_turn = table.turn == np.array([table.turn[table.traj_codes == c].min() for c in table.traj_codes])
    clean_group = ~np.isin(table.group_codes, table.group_codes[invalid & first_turn])
    assert (clean_group & invalid).any()
    np.testing.assert_allclose(shift[clean_group], -0.1 * invalid[clean_group], atol=1e-12)


def test_discounted_returns_match_loop():
    rng = np.random.default_rng(3)
    rows = random_rows(rng, max_len=9)
    table = StepTable.from_records(rows)
    for gamma in (0.0, 0.5, 1.0):
        want = np.zeros(len(rows))
        g = discounted_returns(table, gamma)
        for i, r in enumerate(rows):
            later = sorted((q for q in rows if (q["group_id"], q["traj_id"]) == (r["group_id"], r["traj_id"])
                            and q["turn"] >= r["turn"]), key=lambda q: q["turn"])
            want[i] = sum(gamma**k * q["reward"] for k, q in enumerate(later))
        np.testing.assert_allclose(g, want, atol=1e-12)


def test_turn_gaps_are_not_discounted():
    table = StepTable(group=[0, 0, 0], traj=[0, 0, 0], turn=[5, 0, 2], reward=[1.0, 0.0, 0.0], anchor=["a", "b", "c"])
    np.testing.assert_allclose(discounted_returns(table, 0.5), [1.0, 0.25, 0.5])
    np.testing.assert_array_equal(table.position, [2, 0, 1])


# ------------------------------------------------------------------------------------------------
# registry and errors


def test_registry_lists_builtins():
    assert {"grpo", "gigpo"} <= set(list_estimators())


def test_unknown_estimator_names_the_problem(sec14):
    with pytest.raises(ValueError) as e:
        compute_advantages("gigp0", sec14)
    msg = str(e.value)
    assert "'gigp0'" in msg and "Did you mean 'gigpo'" in msg and "grpo" in msg


def test_unknown_option_names_the_problem(sec14):
    with pytest.raises(TypeError) as e:
        compute_advantages("gigpo", sec14, gama=0.9)
    msg = str(e.value)
    assert "'gama'" in msg and "'gigpo'" in msg and "gamma=0.95" in msg and "mode='mean_norm'" in msg
    with pytest.raises(TypeError, match="'step_advantage_w'"):
        compute_advantages("grpo", sec14, step_advantage_w=1.0)


def test_bad_option_values(sec14):
    with pytest.raises(ValueError, match="mode"):
        compute_advantages("gigpo", sec14, mode="mean")
    with pytest.raises(ValueError, match="episode_stats_over"):
        compute_advantages("grpo", sec14, episode_stats_over="episodes")


def test_register_custom_estimator(sec14):
    @dataclass
    class ConstantOptions:
        value: float = option(1.0, "the advantage of every row")

    @register_estimator("_test_constant", options=ConstantOptions)
    def constant(table, opt):
        """Every row gets `value`."""
        return np.full(len(table), opt.value)

    np.testing.assert_array_equal(compute_advantages("_test_constant", sec14, value=2.0), 2.0)
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'valeu'. Did you mean 'value'\?"):
        compute_advantages("_test_constant", sec14, valeu=2.0)
    with pytest.raises(ValueError, match="already registered"):
        register_estimator("gigpo", options=ConstantOptions)(constant)

    @dataclass
    class Undocumented:
        value: float = 1.0

    with pytest.raises(TypeError, match="option 'value' needs a help string"):
        register_estimator("_test_bad", options=Undocumented)
    with pytest.raises(TypeError, match="options must be a dataclass"):
        register_estimator("_test_bad", options=dict)
    # the train config grows the estimator's section: algo._test_constant.value
    from algos.config import apply_overrides
    from algos.train_config import TrainConfig

    try:
        cfg = apply_overrides(TrainConfig(), ["algo.name=_test_constant", "algo._test_constant.value=0.5"])
        assert cfg.algo._test_constant.value == 0.5
    finally:  # later tests list the estimators: leave only the built-in ones
        import algos.train_config
        from algos import registry

        registry._REGISTRY.pop("_test_constant")
        algos.train_config.AlgoConfig = algos.train_config._algo_config_class()


def test_diagnostics(sec14):
    diag = compute_diagnostics("gigpo", sec14, mode="mean_std_norm")
    # step groups: A: s0(3) s1(3) s2 s3; B: u0(3) u1(5) u2 -> 7 groups over 16 rows, 3 singleton rows
    assert diag["step_group/count"] == 7
    assert diag["step_group/mean_size"] == pytest.approx(16 / 7)
    assert diag["step_group/singleton_frac"] == pytest.approx(3 / 16)
    assert diag["batch/trajs"] == 6 and diag["group/uniform_return_frac"] == 0.0
    assert all(isinstance(v, float) for v in diag.values())
    assert "step_group/count" not in compute_diagnostics("grpo", sec14)


# ------------------------------------------------------------------------------------------------
# StepTable


def test_steptable_from_objects_and_dicts_agree():
    dicts = records_from(SEC14_TRAJS, valid={("t2", 1): False})
    objects = [SimpleNamespace(**d) for d in dicts]
    for d in dicts[::2]:
        if d["valid"]:
            del d["valid"]  # optional, defaults to True
    a, b = StepTable.from_records(dicts), StepTable.from_records(objects)
    np.testing.assert_array_equal(a.valid, b.valid)
    assert (~a.valid).sum() == 1
    np.testing.assert_array_equal(compute_advantages("gigpo", a, invalid_penalty=0.1),
                                  compute_advantages("gigpo", b, invalid_penalty=0.1))


def test_steptable_validation():
    ok = dict(group=[0, 0], traj=[0, 0], turn=[0, 1], reward=[0.0, 1.0], anchor=["a", "b"])
    with pytest.raises(ValueError, match="equal lengths"):
        StepTable(**{**ok, "reward": [0.0]})
    with pytest.raises(TypeError, match="turn"):
        StepTable(**{**ok, "turn": [0.0, 1.5]})
    with pytest.raises(ValueError, match="turn"):
        StepTable(**{**ok, "turn": [0, -1]})
    with pytest.raises(TypeError, match="reward"):
        StepTable(**{**ok, "reward": ["x", "y"]})
    with pytest.raises(ValueError, match="finite"):
        StepTable(**{**ok, "reward": [0.0, float("nan")]})
    with pytest.raises(TypeError, match="valid"):
        StepTable(**{**ok, "valid": [0.5, 1.0]})
    with pytest.raises(TypeError, match="hashable"):
        StepTable(**{**ok, "anchor": [["a"], ["b"]]})
    with pytest.raises(TypeError, match="list or 1-D array"):
        StepTable(**{**ok, "anchor": "ab"})
    with pytest.raises(ValueError, match="duplicate turn"):
        compute_advantages("gigpo", StepTable(**{**ok, "turn": [1, 1]}))
    with pytest.raises(ValueError, match="no field 'anchor'"):
        StepTable.from_records([dict(group_id=0, traj_id=0, turn=0, reward=0.0)])


def test_steptable_keys():
    # trajectory ids local to their group; 1 and "1" are different groups; tuple (image) anchors
    table = StepTable(group=[1, "1", 1, "1"], traj=[0, 0, 0, 0], turn=[0, 0, 1, 1], reward=[0, 1, 2, 3],
                      anchor=[(1, 2), (1, 2), (3,), (1, 2)])
    assert table.n_groups == 2 and table.n_trajs == 2 and table.n_anchors == 2
    np.testing.assert_array_equal(episode_returns(table), [2, 4, 2, 4])
    assert repr(table) == "StepTable(n_rows=4, n_groups=2, n_trajs=2)"
    with pytest.raises(ValueError, match="read-only"):
        table.reward[0] = 5.0


def test_empty_table():
    empty = StepTable(group=[], traj=[], turn=[], reward=[], anchor=[])
    for name in ("grpo", "gigpo"):
        assert compute_advantages(name, empty).shape == (0,)
    assert compute_diagnostics("gigpo", empty)["batch/rows"] == 0.0


def test_every_option_has_one_default_and_a_help_string():
    import dataclasses

    from algos.registry import estimator
    from algos.train import option_lines
    from algos.train_config import TrainConfig

    lines = option_lines(TrainConfig())  # what `groupwise train --help` prints
    for name in list_estimators():
        spec = estimator(name)
        # the config section is the registered dataclass itself: no second copy of the defaults
        assert type(getattr(TrainConfig().algo, name)) is spec.options
        for f in dataclasses.fields(spec.options):
            at = next(i for i, line in enumerate(lines) if line.startswith(f"algo.{name}.{f.name}="))
            doc = []  # the help follows its key, wrapped and indented
            for line in lines[at + 1:]:
                if not line.startswith("    "):
                    break
                doc.append(line.strip())
            assert " ".join(doc) == " ".join(f.metadata["help"].split())
