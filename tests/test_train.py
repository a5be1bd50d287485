"""`groupwise train` end to end on a tiny budget: metrics, checkpoints, kill and resume, bad config."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from algos.checkpoint import list_checkpoints, load_checkpoint, load_latest

SMALL = ["sft.episodes=16", "sft.epochs=1", "rl.iterations=3", "rl.tasks_per_iter=2", "rl.group_size=2",
         "rl.max_new_tokens=8", "eval.episodes=4", "eval.every=2", "save_every=1", "env.workers=0",
         "tensorboard=false", "progress=false", "env.kwargs={max_steps: 6}"]


def _train(out, *extra, timeout=600):
    return subprocess.Popen([sys.executable, "-m", "algos.cli", "train", f"out_dir={out}", *SMALL, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    p = _train(full)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    summary = json.loads((full / "summary.json").read_text())
    assert summary["iterations"] == 3 and 0.0 <= summary["success_after_rl"] <= 1.0
    assert (full / "success.png").stat().st_size > 0 and (full / "final-model" / "config.json").exists()
    assert [c.name for c in list_checkpoints(full / "checkpoints")] == ["ckpt-000002", "ckpt-000003"]
    # `--policy <checkpoint folder>` (groupwise eval / rollout) plays with that checkpoint's weights
    from algos.cli import make_policy

    policy = make_policy(str(full / "checkpoints" / "ckpt-000002"), "sokoban", 0)
    ckpt2 = load_checkpoint(full / "checkpoints" / "ckpt-000002")["model"]
    weights = policy.model.state_dict()
    for k in ckpt2:
        torch.testing.assert_close(weights[k], ckpt2[k])

    # Kill -9 once iteration 2 is checkpointed, then resume: the result must equal the full run.
    p = _train(broken)
    deadline = time.time() + 600
    while not (broken / "checkpoints" / "ckpt-000002").exists():
        assert p.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p = _train(broken, "--resume")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert "resumed from iteration" in out
    a, b = load_latest(full / "checkpoints"), load_latest(broken / "checkpoints")
    assert a["iteration"] == b["iteration"] == 3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])
    steps = [m["iteration"] for m in _metrics(broken) if "rollout/success" in m]
    assert steps == [1, 2, 3]  # no duplicated iteration after the resume

    # A finished run goes on for longer: --resume with a larger rl.iterations.
    p = _train(broken, "--resume", "rl.iterations=4")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert "resuming with rl.iterations=4" in out
    assert load_latest(broken / "checkpoints")["iteration"] == 4
    assert [m["iteration"] for m in _metrics(broken) if "rollout/success" in m] == [1, 2, 3, 4]


def test_resume_takes_run_length_keys_and_refuses_the_rest():
    from algos.config import ConfigError, apply_overrides, to_dict
    from algos.train import resumed_config
    from algos.train_config import TrainConfig

    saved = to_dict(apply_overrides(TrainConfig(), ["rl.iterations=16", "rl.lr=0.0002", "env.id=alfworld"]))
    given = ["rl.iterations=48", "eval.every=4", "rl.lr=0.0002", "out_dir=elsewhere"]
    cfg = resumed_config(saved, apply_overrides(TrainConfig(), given), given)
    assert (cfg.rl.iterations, cfg.eval.every, cfg.rl.lr, cfg.env.id) == (48, 4, 0.0002, "alfworld")
    assert cfg.out_dir == "elsewhere"  # where the run is now (its folder may have moved)
    with pytest.raises(ConfigError, match=r"rl\.lr, rl\.temperature cannot change"):
        bad = ["rl.lr=0.001", "rl.temperature=0.5", "rl.iterations=48"]
        resumed_config(saved, apply_overrides(TrainConfig(), bad), bad)


def test_bad_config_key_suggests_the_right_one(tmp_path):
    r = subprocess.run([sys.executable, "-m", "algos.cli", "train", f"out_dir={tmp_path}", "algo.gigpo.step_advantge_w=0.5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "step_advantage_w" in r.stderr and "step_advantge_w" in r.stderr


def test_unknown_estimator_and_env_fail_before_work(tmp_path, capsys):
    from algos.train import main

    assert main([f"out_dir={tmp_path}", "env.id=sokobn"]) == 2
    assert "did you mean 'sokoban'" in capsys.readouterr().err.lower()
    assert main([f"out_dir={tmp_path}", "algo.name=gipgo"]) == 2
    assert "did you mean 'gigpo'" in capsys.readouterr().err.lower()
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("overrides, expected", [
    (["algo.name=hgpo", "env.history_length=1", "algo.hgpo.history_length=2"],
     "algo.hgpo.history_length=1"),  # the fix is named
    (["algo.name=igpo"], "ground truth"),
    (["algo.name=a2tgpo"], "ground truth"),
    (["algo.name=mc_grpo", "rl.group_size=1"], "group_size >= 2"),
    (["algo.name=rloo", "algo.rloo.invalid_penalt=0.1"], "invalid_penalty"),
])
def test_wrong_combinations_fail_at_start_with_the_fix(tmp_path, capsys, overrides, expected):
    from algos.train import main

    assert main([f"out_dir={tmp_path}", *overrides]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_train_a_local_model_with_lora(tmp_path, tiny_model_dir):
    p = _train(tmp_path, "--model", str(tiny_model_dir), "model.lora=on", "rl.iterations=1", "sft.enabled=false")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    ckpt = load_latest(tmp_path / "checkpoints")
    assert ckpt["model"] and all("lora_" in k for k in ckpt["model"])  # only the adapters train
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final-model")  # a plain model again
    assert not any("lora" in n for n, _ in merged.named_parameters())


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    p = _train(tmp_path, "rl.iterations=50", "save_every=100")
    deadline = time.time() + 600
    while not (tmp_path / "metrics.jsonl").exists() or len(_metrics(tmp_path)) < 3:  # sft, eval, iteration 1
        assert p.poll() is None and time.time() < deadline, "run ended early"
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 130, out
    assert "continue with --resume" in out
    ckpt = load_latest(tmp_path / "checkpoints")
    assert ckpt["iteration"] >= 1  # the save at interruption, not only the one before RL
    assert json.loads((tmp_path / "summary.json").read_text())["interrupted"] is True


def test_a_probe_estimator_on_an_env_without_a_solver_is_a_config_error(tmp_path):
    """The ground-truth check steps the env once; an env without expert_action must not crash it."""
    import envs
    from algos.config import ConfigError, apply_overrides
    from algos.train_checks import check_algorithm
    from algos.train_config import TrainConfig
    from envs.sokoban import SokobanEnv

    class NoSolver(SokobanEnv):
        def expert_action(self):
            raise NotImplementedError("no solver")

    envs.register("sokoban-no-solver", NoSolver)
    with pytest.raises(ConfigError, match="ground-truth answer"):
        check_algorithm(apply_overrides(TrainConfig(), ["env.id=sokoban-no-solver", "algo.name=igpo"]))
