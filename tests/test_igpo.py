"""IGPO (§4) and A²TGPO (§5) against the worked examples of algorithms.md, and the rollout's
ground-truth probe (agents/rollout.py `probe_ground_truth`, HFPolicy.answer_logprobs)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # "tests.gt_envs:QAEnv" is resolved through sys.path
    sys.path.insert(0, str(ROOT))

import algos.a2tgpo  # noqa: E402,F401  (registers "a2tgpo")
import algos.igpo  # noqa: E402,F401  (registers "igpo")
import tests.gt_envs  # noqa: E402,F401  (registers "test-qa")
from agents.policy import SamplingParams  # noqa: E402
from agents.prompts import PromptBuilder  # noqa: E402
from agents.rollout import PROBE_THINK, collect  # noqa: E402
from agents.simple import ExpertPolicy, RandomPolicy  # noqa: E402
from algos import StepTable, compute_advantages, compute_diagnostics  # noqa: E402
from algos.a2tgpo import a2tgpo_clip_ranges  # noqa: E402
from algos.igpo import turn_rewards  # noqa: E402
from envs import EnvPool  # noqa: E402

# §4.5: probes before each turn and the final F1 of three trajectories of one group
PROBES = {"a": [-2.0, -1.0, -0.5], "b": [-2.0, -2.5], "c": [-2.0, -1.5, -1.6, -0.7]}
F1 = {"a": 1.0, "b": 0.0, "c": 0.5}


def _table(probes=PROBES, f1=F1, group="g") -> StepTable:
    rows = [(group, k, t, f1[k] if t == len(v) - 1 else 0.0, p) for k, v in probes.items() for t, p in enumerate(v)]
    g, tr, t, r, p = zip(*rows)
    return StepTable(group=g, traj=tr, turn=t, reward=r, anchor=[f"{a}{b}" for a, b in zip(tr, t)], probe=p)


def _concat(*tables: StepTable) -> StepTable:
    cols = {c: np.concatenate([getattr(t, c) for t in tables]) for c in ("group", "traj", "turn", "reward", "probe")}
    return StepTable(anchor=np.arange(len(cols["group"])).astype(str), **cols)


def _reference_igpo(probes, f1, *, gamma=1.0, norm="joint", prob=True, ig_weight=1.0):
    """Loop-per-trajectory IGPO of §4 (skipped IG -> r̂ = 0), one group: {traj: advantages}."""
    v = {k: [math.exp(x) if prob else x for x in p] for k, p in probes.items()}
    ig = {k: [ig_weight * (b - a) for a, b in zip(x[:-1], x[1:])] for k, x in v.items()}
    used = lambda x: np.isfinite(x) and x != 0.0  # noqa: E731

    def stats(xs):
        xs = np.asarray(xs, dtype=float)
        if len(xs) <= 1:
            return (xs[0] if len(xs) else 0.0), 1.0
        return xs.mean(), math.sqrt(xs.var() + 1e-8)

    igs = [x for k in ig for x in ig[k] if used(x)]
    outs = list(f1.values())
    pools = {"ig": stats(igs + outs), "out": stats(igs + outs)} if norm == "joint" else \
        {"ig": stats(igs), "out": stats(outs)}
    out = {}
    for k in probes:
        r = [(x - pools["ig"][0]) / (pools["ig"][1] + 1e-6) if used(x) else 0.0 for x in ig[k]]
        r.append((f1[k] - pools["out"][0]) / (pools["out"][1] + 1e-6))
        adv, run = [], 0.0
        for x in reversed(r):
            run = x + gamma * run
            adv.append(run)
        out[k] = adv[::-1]
    return out


def _flat(d):
    return np.concatenate([d[k] for k in PROBES])


# ---------------------------------------------------------------------------------------------
# IGPO, §4.5


def test_info_gains_match_the_worked_example():
    reward, is_ig, is_out = turn_rewards(_table())
    np.testing.assert_allclose(reward[is_ig], [0.232544, 0.238651, -0.053250, 0.087795, -0.021234, 0.294689],
                               atol=1e-6)
    np.testing.assert_array_equal(reward[is_out], [1.0, 0.0, 0.5])
    reward, is_ig, _ = turn_rewards(_table(), "log_prob_diff")
    np.testing.assert_allclose(reward[is_ig], [1.0, 0.5, -0.5, 0.5, -0.1, 0.9], atol=1e-12)


@pytest.mark.parametrize("cfg, expected", [
    ({}, [2.2731, 2.3392, 2.3859, -1.7883, -0.8091, -0.4848, 0.0438, 0.9208, 0.7884]),
    ({"gamma": 0.9}, [1.8244, 2.1006, 2.3859, -1.7074, -0.8091, -0.6359, -0.1192, 0.8420, 0.7884]),
    ({"norm": "separate"}, [2.8033, 2.0368, 1.2247, -2.5916, -1.2247, -0.2116, 0.1024, 1.2304, 0.0]),
])
def test_igpo_matches_the_worked_example(cfg, expected):
    np.testing.assert_allclose(compute_advantages("igpo", _table(), **cfg), expected, atol=1e-4)


def test_igpo_matches_the_reference_for_log_prob_diff_and_curriculum_weights():
    ref = _reference_igpo(PROBES, F1, norm="separate", prob=False, gamma=0.95)
    got = compute_advantages("igpo", _table(), info_gain="log_prob_diff", norm="separate", gamma=0.95)
    np.testing.assert_allclose(got, _flat(ref), atol=1e-9)
    # curriculum weights scale the raw rewards before the (joint) normalisation
    ref = _reference_igpo(PROBES, {k: 0.5 * x for k, x in F1.items()}, ig_weight=0.8)
    got = compute_advantages("igpo", _table(), outcome_weight=0.5, ig_weight=0.8)
    np.testing.assert_allclose(got, _flat(ref), atol=1e-9)
    assert not np.allclose(got, compute_advantages("igpo", _table()), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# A²TGPO, §5.3


def test_a2tgpo_matches_the_worked_example():
    adv = compute_advantages("a2tgpo", _table())
    np.testing.assert_allclose(adv, [1.9946, 1.5731, 1.2247, -1.7283, -1.2247, -0.5053, -0.5773, 0.0, 0.0],
                               atol=1e-4)


def test_a2tgpo_clip_ranges_match_the_worked_example():
    eps = a2tgpo_clip_ranges(_table())
    np.testing.assert_allclose(eps, [0.2329, 0.2277, 0.2, 0.1674, 0.2, 0.1997, 0.1723, 0.2, 0.2], atol=1e-4)
    wide = a2tgpo_clip_ranges(_table(), clip=0.1, beta=1.0)
    assert np.all((wide > 0.0) & (wide < 0.2)) and wide[2] == 0.1  # in (ε(1-β), ε(1+β)); final turn ε


def test_a2tgpo_discount_and_term_count():
    # γ enters the sum only; the divisor is the number of turns from t to the end
    adv = compute_advantages("a2tgpo", _table(), gamma=0.5)
    r_a = np.array([1.2300, 1.0, 1.2247])
    np.testing.assert_allclose(adv[:3], [(r_a[0] + 0.5 * r_a[1] + 0.25 * r_a[2]) / math.sqrt(3),
                                         (r_a[1] + 0.5 * r_a[2]) / math.sqrt(2), r_a[2]], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# order, groups, missing and zero probes, errors


def _second_group() -> StepTable:
    probes = {"x": [-1.0, -0.2], "y": [-3.0, -2.0, -2.5], "z": [-0.5]}
    return _table(probes, {"x": 1.0, "y": 0.0, "z": 1.0}, group="h")


@pytest.mark.parametrize("fn", [
    lambda t: compute_advantages("igpo", t),
    lambda t: compute_advantages("igpo", t, norm="separate", gamma=0.9),
    lambda t: compute_advantages("igpo", t, gamma=0.9, skipped_turns="inherit"),
    lambda t: compute_advantages("a2tgpo", t, gamma=0.8),
    lambda t: a2tgpo_clip_ranges(t),
])
def test_row_permutation_and_other_groups_change_nothing(fn):
    one = fn(_table())
    both = _concat(_table(), _second_group())
    base = fn(both)
    np.testing.assert_allclose(base[:9], one, atol=1e-12)  # groups are normalised independently
    perm = np.random.default_rng(0).permutation(len(both))
    np.testing.assert_allclose(fn(both.take(perm)), base[perm], atol=1e-12)


def test_missing_probe_is_skipped_not_a_reward_position():
    probes = dict(PROBES, c=[-2.0, -1.5, float("nan"), -0.7])  # c's IG_1 and IG_2 are undefined
    table = _table(probes)
    _, is_ig, _ = turn_rewards(table)
    assert is_ig.tolist() == [True, True, False, True, False, True, False, False, False]
    for gamma in (1.0, 0.9):
        ref = _reference_igpo(probes, F1, gamma=gamma)
        np.testing.assert_allclose(compute_advantages("igpo", table, gamma=gamma), _flat(ref), atol=1e-9)
    # the token implementation: skipped turns share the next rewarded turn's advantage, no discount step
    zero = compute_advantages("igpo", table, gamma=0.9)
    inherit = compute_advantages("igpo", table, gamma=0.9, skipped_turns="inherit")
    c = slice(5, 9)
    out = inherit[c][3]
    np.testing.assert_allclose(inherit[c][1:3], [out, out], atol=1e-12)
    np.testing.assert_allclose(zero[c][1:3], [0.81 * out, 0.9 * out], atol=1e-12)
    np.testing.assert_allclose(inherit[c][0] - zero[c][0], 0.9 * out - 0.729 * out, atol=1e-12)
    np.testing.assert_allclose(inherit[:5], zero[:5], atol=1e-12)
    # γ = 1: both readings agree
    np.testing.assert_allclose(compute_advantages("igpo", table, skipped_turns="inherit"),
                               compute_advantages("igpo", table), atol=1e-12)


def test_zero_information_gain_is_left_out_of_the_statistics():
    probes = dict(PROBES, b=[-2.0, -2.0, -2.5])  # b's IG_0 is exactly 0
    table = _table(probes)
    _, is_ig, _ = turn_rewards(table)
    assert not is_ig[3] and is_ig[4]
    adv = compute_advantages("igpo", table)
    np.testing.assert_allclose(adv, _flat(_reference_igpo(probes, F1)), atol=1e-9)
    assert adv[3] == pytest.approx(adv[4])  # r̂ = 0: the turn carries the next turn's advantage (γ = 1)


def test_single_trajectory_and_single_turn_groups():
    table = _table({"a": [-2.0, -1.0]}, {"a": 1.0})  # pool {IG, F1} of two elements; IG-only pool singleton
    sep = compute_advantages("igpo", table, norm="separate")
    np.testing.assert_allclose(sep, [0.0, 0.0], atol=1e-12)  # singleton pools give r̂ = 0
    assert np.all(np.isfinite(compute_advantages("a2tgpo", table)))
    empty = table.take(np.zeros(0, dtype=int))
    assert compute_advantages("igpo", empty).shape == (0,) and a2tgpo_clip_ranges(empty).shape == (0,)


def test_no_probe_at_all_is_an_error_that_says_how_to_fix_it():
    table = _table({k: [float("nan")] * len(v) for k, v in PROBES.items()})
    for fn in (lambda: compute_advantages("igpo", table), lambda: compute_advantages("a2tgpo", table),
               lambda: a2tgpo_clip_ranges(table)):
        with pytest.raises(ValueError, match="probe the ground truth.*ground_truth"):
            fn()


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="igpo: norm: 'both' is not allowed; choose one of 'joint', 'separate'"):
        compute_advantages("igpo", _table(), norm="both")
    with pytest.raises(ValueError, match="a2tgpo: info_gain: 'kl' is not allowed"):
        compute_advantages("a2tgpo", _table(), info_gain="kl")
    with pytest.raises(ValueError, match="igpo: skipped_turns: 'drop' is not allowed"):
        compute_advantages("igpo", _table(), skipped_turns="drop")


def test_diagnostics_report_probe_coverage():
    d = compute_diagnostics("igpo", _table(dict(PROBES, b=[-2.0, float("nan")])))
    assert d["probe/missing_frac"] == pytest.approx(1 / 9)
    assert d["ig/positions_frac"] == pytest.approx(5 / 6)


# ---------------------------------------------------------------------------------------------
# the rollout's ground-truth probe


class ProbingExpert(ExpertPolicy):
    """The env's expert, plus a fake probe (-len(answer)) that records what it is asked."""

    def __init__(self, action_format):
        super().__init__(action_format)
        self.calls = []

    def answer_logprobs(self, requests, prefixes, answers, suffixes):
        self.calls.append((len(requests), list(prefixes), list(answers), list(suffixes)))
        return [-float(len(a)) for a in answers]


def test_engine_probes_every_turn_in_one_batch_and_copies_reward_components():
    prompt = PromptBuilder.for_env("test-qa")
    policy = ProbingExpert(prompt.action_format)
    with EnvPool("test-qa", num_envs=4, num_workers=0, env_kwargs={"aliases": True}) as pool:
        ro = collect(pool, policy, seeds=[0, 1], group_size=2, prompt=prompt, probe_ground_truth=True)
    assert ro.metrics["success"] == 1.0 and "time_probe" in ro.metrics
    assert [c[0] for c in policy.calls] == [4, 4]  # one call per turn with every running episode
    prefix, suffix = prompt.action_format.format(action="@", think=PROBE_THINK).split("@")
    assert all(c[1] == [prefix] * 4 and c[3] == [suffix] * 4 for c in policy.calls)
    assert prefix.endswith("<action>") and PROBE_THINK in prefix and suffix == "</action>"
    for t in ro.trajectories:
        first_alias = t.steps[0].info["ground_truth"][0]
        assert [s.probe for s in t.steps] == [-float(len(first_alias))] * 2
        assert [s.components for s in t.steps] == [None, {"correct": 1.0, "format": 1.0}]
    table = StepTable.from_records(ro.steps)
    assert table.component_names == ("correct", "format") and np.all(np.isfinite(table.probe))
    assert np.all(np.isfinite(compute_advantages("igpo", table)))


def test_probing_needs_a_policy_that_can_score_answers():
    with EnvPool("test-qa", num_envs=2, num_workers=0) as pool:
        with pytest.raises(TypeError, match="RandomPolicy"):
            collect(pool, RandomPolicy(), seeds=[0], group_size=2, probe_ground_truth=True)
        ro = collect(pool, RandomPolicy(), seeds=[0], group_size=2)  # off by default
    assert all(s.probe is None for s in ro.steps) and "time_probe" not in ro.metrics


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_dir):
    from agents.hf import HFPolicy

    return HFPolicy(tiny_model_dir)


def test_tiny_model_probe_equals_an_independent_per_sample_computation(tiny_policy):
    from agents.forward import sequence_logprobs

    prompt = PromptBuilder.for_env("test-qa")
    with EnvPool("test-qa", num_envs=4, num_workers=0) as pool:
        # seeds 0 and 1 ask different questions: each probe batch mixes answer and prompt lengths
        ro = collect(pool, tiny_policy, seeds=[0, 1], group_size=2, prompt=prompt, probe_ground_truth=True,
                     sampling=SamplingParams(max_new_tokens=8, seed=0))
    steps = ro.steps
    assert len({s.info["ground_truth"] for s in steps}) == 2
    assert len(steps) >= 4 and all(s.probe is not None for s in steps)
    assert ro.metrics["time_probe"] > 0
    prefix, suffix = prompt.action_format.format(action="@", think=PROBE_THINK).split("@")
    tok = tiny_policy.tokenizer
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    with torch.no_grad():
        for s in steps:
            gt = s.info["ground_truth"]
            pre, ans = ids(prefix), ids(gt)
            logp, _, _ = sequence_logprobs(tiny_policy.model, [s.prompt_ids], [pre + ans + ids(suffix)],
                                           tiny_policy.pad_token_id)
            want = float(logp[0, len(pre): len(pre) + len(ans)].mean())
            assert s.probe == pytest.approx(want, abs=1e-5)
            assert s.probe < 0
    # different contexts give different probes (the prompt really conditions the probe)
    assert len({round(s.probe, 6) for s in steps}) > 1


def test_tiny_model_probe_skips_envs_without_ground_truth(tiny_policy):
    with EnvPool("test-qa", num_envs=2, num_workers=0, env_kwargs={"give_ground_truth": False}) as pool:
        ro = collect(pool, tiny_policy, seeds=[0], group_size=2, prompt=PromptBuilder.for_env("test-qa"),
                     probe_ground_truth=True, sampling=SamplingParams(max_new_tokens=4, seed=0))
    assert ro.steps and all(s.probe is None for s in ro.steps)
    with pytest.raises(ValueError, match="probe the ground truth"):
        compute_advantages("igpo", StepTable.from_records(ro.steps))
