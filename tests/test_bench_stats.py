"""Confidence intervals and paired comparisons of `groupwise bench` (algos/stats.py, algos/bench.py)
on small synthetic results whose answer is known."""

import json
import math

import numpy as np
import pytest

from algos.bench import BenchConfig, final_task_outcomes, report
from algos.stats import mean_ci, paired_bootstrap, verdict


def test_mean_ci_is_the_t_interval():
    mean, low, high = mean_ci([0.5, 0.6, 0.7])
    # t(0.975, 2) = 4.303, sd = 0.1
    assert mean == pytest.approx(0.6) and high - mean == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_ci([0.4])[1])


def test_paired_bootstrap_covers_the_truth_and_pairs_the_tasks():
    rng = np.random.default_rng(0)
    # task difficulty shared by both algorithms; b wins 10 points more often on every task
    p = rng.uniform(0.1, 0.8, size=(5, 256))
    a = (rng.random((5, 256)) < p).astype(float)
    b = (rng.random((5, 256)) < p + 0.1).astype(float)
    ci = paired_bootstrap(b, a, n_boot=2000)
    assert ci["low"] < 0.1 < ci["high"] and ci["low"] > 0
    assert ci["diff"] == pytest.approx((b - a).mean())
    # identical outcomes: no spread at all, a difference of exactly 0
    same = paired_bootstrap(a, a, n_boot=500)
    assert same["low"] == same["high"] == same["diff"] == 0.0
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap(a, b[:, :10])


def test_verdict_words():
    assert verdict(0.02, 0.09, "GiGPO", "GRPO") == (True, "resolved: GiGPO higher")
    assert verdict(-0.09, -0.01, "GiGPO", "GRPO") == (True, "resolved: GRPO higher")
    assert verdict(-0.03, 0.04, "GiGPO", "GRPO") == (True, "resolved: tie within ±0.05")
    assert verdict(-0.08, 0.06, "GiGPO", "GRPO") == (False, "not resolved")


def _summary(outcomes, start=0.3):
    success = float(np.mean(outcomes))
    seeds = list(range(1_000_000, 1_000_000 + len(outcomes)))
    return {"success_before_rl": start, "success_after_rl": success, "best_success": success, "seconds": 60.0,
            "tokens_generated": 10.0, "tokens_trained": 20.0,
            "eval_curve": [{"iteration": 0, "success": start}, {"iteration": 4, "success": success}],
            "eval_tasks": {"0": {"seed": seeds, "success": [0.0] * len(seeds)},
                           "4": {"seed": seeds, "success": [float(v) for v in outcomes]}}}


def test_bench_report_carries_cis_pairs_and_resolved_flags(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.2, 0.6, size=(5, 256))
    low = (rng.random((5, 256)) < p).astype(int)
    high = (rng.random((5, 256)) < p + 0.25).astype(int)
    noisy = (rng.random((5, 256)) < p + 0.01).astype(int)
    results = {"GRPO": [_summary(r) for r in low], "GiGPO": [_summary(r) for r in high],
               "RLOO": [_summary(r) for r in noisy[:, :12]] }
    # RLOO played 12 tasks per seed, the others 256: a paired comparison with it must fail loudly
    bench = BenchConfig(name="synthetic", seeds=[0, 1, 2, 3, 4], algorithms={k: [] for k in results})
    with pytest.raises(ValueError, match="different tasks"):
        report(bench, results, tmp_path)
    results["RLOO"] = [_summary(r) for r in low]  # the same outcomes as GRPO: a difference of exactly 0
    table = report(bench, results, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    md = (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 0
    m, lo, hi = table["GiGPO"]["final_mean"], *table["GiGPO"]["final_ci"]
    assert lo < m < hi and m == pytest.approx(high.mean())
    pairs = {(q["a"], q["b"]): q for q in data["pairs"]}
    assert set(pairs) == {("GiGPO", "GRPO"), ("RLOO", "GRPO"), ("RLOO", "GiGPO")}
    up = pairs[("GiGPO", "GRPO")]
    assert up["resolved"] and up["verdict"] == "resolved: GiGPO higher" and up["low"] > 0.1
    assert up["seeds"] == 5 and up["tasks"] == 256
    tie = pairs[("RLOO", "GRPO")]
    assert tie["resolved"] and tie["verdict"].startswith("resolved: tie") and tie["diff"] == 0.0
    assert "| GiGPO − GRPO |" in md and "resolved: GiGPO higher" in md
    # what RL added over the start (all 0 in these summaries), paired on the same tasks
    gain = data["results"]["GiGPO"]["gain_over_start"]
    assert gain["diff"] == pytest.approx(high.mean()) and gain["low"] > 0 and "What RL added" in md
    assert f"[{lo:.3f}, {hi:.3f}]" in md


def test_a_small_noisy_comparison_is_not_resolved(tmp_path):
    rng = np.random.default_rng(2)
    a = (rng.random((2, 16)) < 0.5).astype(int)
    b = (rng.random((2, 16)) < 0.5).astype(int)
    results = {"A": [_summary(r) for r in a], "B": [_summary(r) for r in b]}
    results["B"][1]["eval_curve"][-1]["failed_episodes"] = 2.0  # two env faults in one evaluation
    report(BenchConfig(name="small", seeds=[0, 1], algorithms={"A": [], "B": []}), results, tmp_path)
    (pair,) = json.loads((tmp_path / "bench.json").read_text())["pairs"]
    assert not pair["resolved"] and pair["verdict"] == "not resolved"
    md = (tmp_path / "bench.md").read_text()
    assert "not resolved" in md and "env failed (left out of the success rates): A 0, B 2" in md


def test_final_task_outcomes_reads_the_last_evaluation_and_older_runs():
    s = _summary([1, 0, 1])
    assert final_task_outcomes(s) == ([1_000_000, 1_000_001, 1_000_002], [1.0, 0.0, 1.0])
    assert final_task_outcomes({"eval_curve": []}) is None  # a run from before per-task outcomes
    s["eval_tasks"] = {"10": {"seed": [5], "won": [1]}, "2": {"seed": [5], "won": [0]}}
    assert final_task_outcomes(s) == ([5], [1.0])  # iteration 10 is the last, not "2"


def test_tasks_whose_env_failed_are_left_out_of_the_pairing():
    a = np.array([[1.0, 0.0, np.nan, 1.0]])
    b = np.array([[0.0, 0.0, 1.0, np.nan]])
    ci = paired_bootstrap(a, b, n_boot=300)
    assert ci["diff"] == pytest.approx(0.5)  # tasks 0 and 1 only: (1 - 0 + 0 - 0) / 2
    with pytest.raises(ValueError, match="no task has an outcome"):
        paired_bootstrap(np.array([[np.nan]]), np.array([[1.0]]))
    s = _summary([1, 0])
    s["eval_tasks"]["4"]["success"][1] = None  # every episode of that task failed
    assert final_task_outcomes(s)[1][0] == 1.0 and math.isnan(final_task_outcomes(s)[1][1])


def test_evaluation_reports_failed_episodes_apart_from_the_policy(tmp_path):
    import envs
    from agents.prompts import PromptBuilder
    from agents.simple import ExpertPolicy
    from algos.config import apply_overrides
    from algos.evaluate import evaluate
    from algos.train_config import TrainConfig

    envs.register("test-faulty", "tests.faulty_envs:FaultyEnv")
    cfg = apply_overrides(TrainConfig(), ["env.id=test-faulty", "eval.episodes=3", "eval.seed=12"])
    prompt = PromptBuilder.for_env("test-faulty", history_length=0)
    with envs.EnvPool("test-faulty", num_envs=3, num_workers=0, env_kwargs={"mode": "raise", "bad_seed": 13}) as pool:
        metrics, outcomes = evaluate(ExpertPolicy(prompt.action_format), pool, prompt, cfg)
    assert metrics["failed_episodes"] == 1.0 and outcomes["failed"] == [0, 1, 0]
    # the expert wins the two episodes that played: the failed one does not count against it
    assert outcomes["success"] == [1.0, None, 1.0] and metrics["success"] == 1.0


def test_learning_report_pairs_start_and_final_and_breaks_the_gain_down_by_task_type(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    run = tmp_path / "run"
    run.mkdir()
    seeds = list(range(2_000, 2_008))
    start = [1, 0, 1, 0, 0, 0, 1, 0]  # 3/8
    final = [1, 1, 1, 0, 1, 1, 1, 0]  # 6/8: three tasks gained, none lost
    curve = [{"iteration": 0, "success": 0.375, "success/target below": 0.5, "success/target above": 0.25},
             {"iteration": 4, "success": 0.75, "success/target below": 1.0, "success/target above": 0.5}]
    summary = {"env": "numberline", "algo": "gigpo", "iterations": 4, "seconds": 120.0, "peak_rss_gb": 1.5,
               "eval_curve": curve, "eval_tasks": {"0": {"seed": seeds, "success": start},
                                                   "4": {"seed": seeds, "success": final}}}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"path": None}, "env": {"id": "numberline"}}))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_report.py"
    subprocess.run([sys.executable, str(script), str(run), "--name", "t", "--out", str(tmp_path / "out")],
                   check=True, capture_output=True)
    report = json.loads((tmp_path / "out" / "t.json").read_text())
    assert report["episodes"] == 8 and report["paired_diff"] == pytest.approx(3 / 8)
    d = np.array(final) - np.array(start)
    assert report["paired_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(8))
    assert report["by_task_type"] == {"target above": [0.25, 0.5], "target below": [0.5, 1.0]}
    md = (tmp_path / "out" / "t.md").read_text()
    assert "| target below | 0.500 | 1.000 |" in md and (tmp_path / "out" / "t.png").stat().st_size > 0
