"""`groupwise bench`: config validation, equal budgets, and a small comparison end to end."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from algos.bench import load_bench, run_configs
from algos.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["sft.episodes=16", "sft.epochs=1", "rl.iterations=2", "rl.tasks_per_iter=2", "rl.group_size=2",
         "rl.max_new_tokens=8", "eval.episodes=4", "eval.every=1", "env.workers=0", "env.kwargs={max_steps: 5}"]


def test_shipped_config_builds_equal_budgets(tmp_path):
    bench = load_bench(ROOT / "benchmarks" / "configs" / "sokoban.yaml")
    assert {"GRPO", "GiGPO", "HGPO", "Flow-GRPO", "RLOO", "PPO (critic)"} <= set(bench.algorithms)
    warm, runs = run_configs(bench, tmp_path)
    assert set(warm) == set(bench.seeds)
    for (label, seed), cfg in runs.items():
        assert cfg.seed == seed and not cfg.sft.enabled
        assert cfg.model.path == str(tmp_path / f"warm-start-seed{seed}" / "final-model")
        # same env and history as the warm start, and the prompt it was trained on (auto -> compact)
        assert (cfg.env.id, cfg.env.kwargs, cfg.env.history_length) == (
            warm[seed].env.id, warm[seed].env.kwargs, warm[seed].env.history_length)
        assert cfg.env.prompt == "compact" and warm[seed].env.prompt == "auto"
    # the budget is the same for every algorithm
    budgets = {(c.rl.iterations, c.rl.tasks_per_iter, c.rl.group_size, c.eval.episodes, c.eval.seed)
               for c in runs.values()}
    assert len(budgets) == 1
    names = {cfg.algo.name for cfg in runs.values()}
    assert names == {"grpo", "gigpo", "hgpo", "flow_grpo", "rloo", "gae"}


def test_bad_bench_configs_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_bench(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: x\nalgorithms: {}\n")
    with pytest.raises(ConfigError, match="algorithms"):
        load_bench(empty)
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\nalgoritms: {GRPO: [algo.name=grpo]}\n")
    with pytest.raises(ConfigError, match="algorithms"):
        load_bench(typo)
    bad_key = tmp_path / "badkey.yaml"
    bad_key.write_text("algorithms: {GRPO: [algo.name=grpo, rl.iteratons=3]}\n")
    with pytest.raises(ConfigError, match="iterations"):
        run_configs(load_bench(bad_key), tmp_path)


@pytest.mark.slow
def test_bench_runs_a_comparison_and_writes_table_and_plot(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps({
        "name": "tiny", "seeds": [0], "common": SMALL,
        "algorithms": {"GRPO": ["algo.name=grpo"], "PPO (critic)": ["algo.name=gae"]},
    }))
    cmd = [sys.executable, "-m", "algos.cli", "bench", str(cfg), "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    table = (tmp_path / "out" / "bench.md").read_text()
    assert "| GRPO |" in table and "| PPO (critic) |" in table
    assert (tmp_path / "out" / "bench.png").stat().st_size > 0
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert len(data["curves"]["GRPO"][0]) == 3  # evaluations at iterations 0, 1, 2
    # both algorithms started from the same warm start
    assert data["results"]["GRPO"]["start"] == data["results"]["PPO (critic)"]["start"]
    assert data["results"]["GRPO"]["tokens_generated"][0] > 0
    # one seed: no interval over seeds, but the paired difference over the 4 shared evaluation tasks
    assert data["results"]["GRPO"]["final_ci"] is None and "n/a (one seed)" in table
    (pair,) = data["pairs"]
    assert (pair["a"], pair["b"], pair["seeds"], pair["tasks"]) == ("PPO (critic)", "GRPO", 1, 4)
    assert pair["low"] <= pair["diff"] <= pair["high"] and isinstance(pair["resolved"], bool)
    assert "| PPO (critic) − GRPO |" in table
    # finished runs are not trained again
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r2.returncode == 0 and "sft:" not in r2.stdout
    # --report-only trains nothing and reports the finished seeds; with none finished it says so
    r3 = subprocess.run(cmd + ["--report-only"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r3.returncode == 0 and "| GRPO |" in r3.stdout and "sft:" not in r3.stdout
    r4 = subprocess.run(cmd[:-1] + [str(tmp_path / "empty"), "--report-only"], capture_output=True, text=True,
                        timeout=300, cwd=ROOT)
    assert r4.returncode == 2 and "no seed of tiny has finished" in r4.stderr


def test_every_bench_config_the_readme_names_builds_and_keeps_evaluation_apart(tmp_path):
    from algos.task_sets import check_task_sets

    readme = (ROOT / "README.md").read_text()
    named = sorted(set(re.findall(r"groupwise bench (benchmarks/configs/[\w.-]+\.yaml)", readme)))
    assert "benchmarks/configs/sokoban-paired.yaml" in named and "benchmarks/configs/alfworld.yaml" in named
    for path in named:
        bench = load_bench(ROOT / path)
        warm, runs = run_configs(bench, tmp_path)
        for cfg in [*warm.values(), *runs.values()]:
            check_task_sets(cfg)
    paired = load_bench(ROOT / "benchmarks/configs/sokoban-paired.yaml")
    _, runs = run_configs(paired, tmp_path)
    assert len(paired.seeds) >= 5 and all(c.eval.episodes >= 256 for c in runs.values())
