"""One PPO update moves probability toward positive-advantage responses and away from negative ones."""

import torch

from agents.hf import HFPolicy
from agents.forward import sequence_logprobs
from algos.batching import Row, chat_prompt_ids, response_ids_for
from algos.rl import RLTrainer
from algos.train_config import TrainConfig


def test_update_direction_follows_the_advantage_sign(tiny_model_dir):
    policy = HFPolicy(tiny_model_dir)
    tok = policy.tokenizer
    cfg = TrainConfig()
    cfg.rl.lr, cfg.rl.minibatch_size = 1e-3, 8
    trainer = RLTrainer(cfg, policy, pool=None, prompt=None)
    prompt = chat_prompt_ids(tok, [{"role": "user", "content": "Player at (4, 2). Boxes at (2, 2)."}])
    good, bad = response_ids_for(tok, "<action>up</action>"), response_ids_for(tok, "<action>left</action>")

    def logps():
        with torch.no_grad():
            lp, mask, _ = sequence_logprobs(policy.model, [prompt, prompt], [good, bad], pad_id=tok.pad_token_id)
        return (lp * mask).sum(1)

    before = logps()
    rows = [Row(prompt, good, advantage=1.0), Row(prompt, bad, advantage=-1.0)]
    for r, lp in zip(rows, sequence_logprobs(policy.model, [prompt] * 2, [good, bad], pad_id=tok.pad_token_id)[0]):
        r.old_logprobs = lp[: len(r.response_ids)].detach()
    stats = trainer.update(rows, iteration=0)
    after = logps()
    assert after[0] > before[0] and after[1] < before[1]
    assert stats["grad_norm"] > 0 and 0.0 <= stats["clip_frac"] <= 1.0


import math  # noqa: E402

import pytest  # noqa: E402

from agents.prompts import PromptBuilder  # noqa: E402
from agents.records import Trajectory  # noqa: E402
from algos.config import apply_overrides  # noqa: E402
from algos.advantage_rows import informative_groups, rows_with_advantages  # noqa: E402
from envs import EnvPool  # noqa: E402


@pytest.mark.parametrize("loss", ["ppo", "turn_ppo", "gspo", "sapo", "epo"])
def test_every_policy_loss_moves_toward_the_advantage(tiny_model_dir, loss):
    policy = HFPolicy(tiny_model_dir)
    tok = policy.tokenizer
    overrides = ["rl.lr=1e-3", "rl.minibatch_size=8"]
    overrides += ["loss.epo.enabled=true", "loss.entropy_coef=0.001"] if loss == "epo" else [f"loss.name={loss}"]
    if loss == "gspo":
        overrides += ["loss.clip_low=0.2", "loss.clip_high=0.2"]
    trainer = RLTrainer(apply_overrides(TrainConfig(), overrides), policy, pool=None, prompt=None)
    trainer.entropy_history = [{0: 1.0}]
    prompt = chat_prompt_ids(tok, [{"role": "user", "content": "Player at (4, 2). Boxes at (2, 2)."}])
    good, bad = response_ids_for(tok, "<action>up</action>"), response_ids_for(tok, "<action>left</action>")
    rows = [Row(prompt, good, advantage=1.0), Row(prompt, bad, advantage=-1.0)]
    with torch.no_grad():
        lp, mask, _ = sequence_logprobs(policy.model, [prompt] * 2, [good, bad], pad_id=tok.pad_token_id)
    for r, x in zip(rows, lp):
        r.old_logprobs = x[: len(r.response_ids)].clone()
    before = (lp * mask).sum(1)
    stats = trainer.update(rows, iteration=0)
    with torch.no_grad():
        lp, mask, _ = sequence_logprobs(policy.model, [prompt] * 2, [good, bad], pad_id=tok.pad_token_id)
    after = (lp * mask).sum(1)
    assert after[0] > before[0] and after[1] < before[1]
    assert all(math.isfinite(v) for v in stats.values())
    if loss == "epo":
        assert 0 < stats["epo_phase_weight"] <= 1


def test_dynamic_sampling_drops_groups_without_signal():
    def traj(group, ret):
        return Trajectory(traj_id=0, group_id=group, seed=0, episode_return=ret)

    # §11.2: groups [1,1,1,1] and [0,0,0,0] go, [1,0,0,1] stays; a failed episode does not count
    batch = [traj(0, r) for r in (1, 1, 1, 1)] + [traj(1, r) for r in (0, 0, 0, 0)] + [traj(2, r) for r in (1, 0, 0, 1)]
    broken = traj(3, 5.0)
    broken.error = "worker died"
    batch += [traj(3, 0.0), traj(3, 0.0), broken]
    assert [g[0].group_id for g in informative_groups(batch)] == [2]


ALGOS = ["grpo", "gigpo", "hgpo", "flow_grpo", "rloo", "reinforce_pp", "dr_grpo", "mc_grpo", "gdpo", "salt", "gae"]


@pytest.fixture(scope="module")
def sokoban_pool():
    with EnvPool("sokoban", num_envs=6, num_workers=0, env_kwargs={"max_steps": 4}) as pool:
        yield pool


@pytest.mark.parametrize("algo", ALGOS)
def test_every_estimator_trains_through_the_trainer(tiny_model_dir, sokoban_pool, algo):
    cfg = apply_overrides(TrainConfig(), [f"algo.name={algo}", "rl.tasks_per_iter=2", "rl.group_size=2",
                                          "rl.max_new_tokens=8", "rl.minibatch_size=16", "env.history_length=1"])
    policy = HFPolicy(tiny_model_dir)
    prompt = PromptBuilder.for_env("sokoban", compact=True, history_length=1)
    trainer = RLTrainer(cfg, policy, sokoban_pool, prompt)
    m = trainer.iteration(0)
    assert m["train/rows"] > 0 and math.isfinite(m["train/grad_norm"])
    assert m["rollout/episodes"] == 2 * trainer.group_size
    if algo == "mc_grpo":  # G + 1 rollouts per task, the median pivot's rows left out
        assert trainer.group_size == 3 and m["adv/dropped_frac"] > 0
    if algo == "gae":
        assert "train/critic_value_loss" in m and "critic" in trainer.state_dict()


def test_dynamic_sampling_refills_the_batch(tiny_model_dir, sokoban_pool):
    cfg = apply_overrides(TrainConfig(), ["algo.name=grpo", "rl.tasks_per_iter=2", "rl.group_size=3",
                                          "rl.max_new_tokens=8", "rl.dynamic_sampling=true",
                                          "rl.max_sampling_rounds=3"])
    trainer = RLTrainer(cfg, HFPolicy(tiny_model_dir), sokoban_pool, PromptBuilder.for_env("sokoban", compact=True))
    trajectories, metrics = trainer.collect_batch(0)
    groups = {t.group_id for t in trajectories}
    assert 1 <= metrics["dynamic_rounds"] <= 3 and len(groups) == metrics["dynamic_groups"] <= 2
    assert len(informative_groups(trajectories)) == len(groups)  # only groups with signal are kept
    if metrics["dynamic_rounds"] < 3:
        assert len(groups) == 2


@pytest.mark.parametrize("algo", ["igpo", "a2tgpo"])
def test_information_gain_estimators_train_on_an_env_with_a_ground_truth(tiny_model_dir, algo):
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    import tests.gt_envs  # noqa: F401  (registers "test-qa")

    cfg = apply_overrides(TrainConfig(), [f"algo.name={algo}", "env.id=test-qa", "rl.tasks_per_iter=2",
                                          "rl.group_size=2", "rl.max_new_tokens=8", "rl.minibatch_size=16"])
    with EnvPool("test-qa", num_envs=4, num_workers=0) as pool:
        trainer = RLTrainer(cfg, HFPolicy(tiny_model_dir), pool, PromptBuilder.for_env("test-qa", compact=True))
        trajectories, _ = trainer.collect_batch(0)
        assert all(s.probe is not None for t in trajectories for s in t.steps)  # probed with the rollout weights
        rows, _ = rows_with_advantages(trajectories, cfg)
        m = trainer.iteration(1)
    assert m["train/rows"] > 0 and math.isfinite(m["train/grad_norm"])
    if algo == "a2tgpo":  # every row carries its turn's clip range, within eps * (1 -/+ beta)
        clips = [r.columns["clip"] for r in rows]
        assert len(clips) == len(rows) and all(0.2 * 0.7 - 1e-9 <= c <= 0.2 * 1.3 + 1e-9 for c in clips)
