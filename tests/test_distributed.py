"""Distributed training on 2 CPU processes (gloo): whole groups, equal updates, torchrun end to end.

One `torch.multiprocessing` spawn of 2 ranks runs the in-process checks (advantages, a DDP update,
an FSDP update) and writes its results for the tests below; the CLI test runs `torchrun`.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from algos.config import apply_overrides
from algos.train_config import TrainConfig

G, TASKS = 3, 5  # an odd task count: the ranks get 2 and 3 groups
UPDATE = ["rl.lr=1e-3", "rl.minibatch_size=4", "rl.micro_batch_size=1", "rl.max_grad_norm=100"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expert_trajectories(seeds: list[int], first_group_id: int = 0):
    """Noisy expert play on Sokoban (cheap, and the members of a group differ)."""
    from agents.prompts import PromptBuilder
    from agents.rollout import collect
    from agents.simple import ExpertPolicy
    from envs import EnvPool

    prompt = PromptBuilder.for_env("sokoban", compact=True, history_length=0)
    with EnvPool("sokoban", num_envs=len(seeds) * G, num_workers=0, env_kwargs={"max_steps": 15}) as pool:
        policy = ExpertPolicy(prompt.action_format, noise=0.5, seed=sum(seeds))
        trajs = collect(pool, policy, seeds, G, prompt=prompt, first_group_id=first_group_id).trajectories
    for s in (s for t in trajs for s in t.steps):
        s.response_ids = s.response_ids or [1]  # the expert writes text only; a row needs a token
    return trajs


def _rows(tok) -> list:
    """7 rows (odd, so minibatch shares differ) over 3 prompts with varied responses; each rank
    plays a contiguous slice of them, as a distributed collection gives them out."""
    from algos import distributed as dist
    from algos.batching import Row, chat_prompt_ids, response_ids_for

    prompts = [chat_prompt_ids(tok, [{"role": "user", "content": f"Player at ({i}, 2). Boxes at (2, {i})."}])
               for i in range(3)]
    actions = ["up", "left", "down", "right", "up up", "left", "push"]
    lo, hi = dist.shard_range(len(actions))
    return [Row(prompts[k % 3], response_ids_for(tok, f"<action>{a}</action>"), advantage=(-1.0) ** k * (1 + k / 7),
                local=lo <= k < hi) for k, a in enumerate(actions)]


def _update(model_dir: str) -> dict:
    """One RL update (2 minibatches) on the fixed rows; returns the new weights and stats."""
    from agents.hf import HFPolicy
    from algos import distributed as dist
    from algos.rl import RLTrainer

    torch.manual_seed(0)
    policy = HFPolicy(model_dir)
    if dist.context().rank == 1:  # a different start on rank 1: the broadcast must undo it
        with torch.no_grad():
            for p in policy.model.parameters():
                p.add_(0.01)
    dist.broadcast_module(policy.model)
    trainer = RLTrainer(apply_overrides(TrainConfig(), UPDATE), policy, pool=None, prompt=None)
    rows = _rows(policy.tokenizer)
    trainer.attach_logprobs(rows)
    stats = trainer.update(rows, iteration=0)
    trainer.state_dict()  # gathering the (FSDP: sharded) optimizer state must work on every rank
    return {"weights": {k: v.detach().clone() for k, v in policy.model.state_dict().items()}, "stats": stats,
            "old": [r.old_logprobs for r in rows]}


def _critic_update(model_dir: str) -> dict:
    """One critic update (GAE) on the fixed rows, each rank on the rows it played; the critic's
    new weights and stats."""
    from agents.hf import HFPolicy
    from algos.rl import RLTrainer

    torch.manual_seed(0)
    policy = HFPolicy(model_dir)
    trainer = RLTrainer(apply_overrides(TrainConfig(), UPDATE + ["algo.name=gae"]), policy, pool=None, prompt=None)
    rows = _rows(policy.tokenizer)
    for k, r in enumerate(rows):
        r.value, r.columns = 0.1 * k, {"return": 1.0 - 0.2 * k}
    stats = trainer.update_critic(rows, iteration=0)
    return {"weights": {k: v.detach().clone() for k, v in trainer.critic.state_dict().items()}, "stats": stats}


def _worker(rank: int, world: int, port: int, out: str, model_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as tdist

    from algos import distributed as dist
    from algos.advantage_rows import rows_with_advantages

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    result: dict = {}
    try:
        dist.set_context(dist.DistContext(rank=rank, world=world, mode="ddp"))
        cfg = apply_overrides(TrainConfig(), ["algo.name=gigpo", "algo.gigpo.mode=mean_std_norm"])
        # (1) the batch a single process collected, split as the trainer splits it (whole task groups
        # per rank), gathered, and turned into advantages on every rank.
        batch = pickle.loads((Path(out) / "batch.pkl").read_bytes())
        lo, hi = dist.shard_range(TASKS)
        mine = [t for t in batch if lo <= t.group_id < hi]
        gathered = [t for part in dist.all_gather_objects(mine) for t in part]
        rows, _ = rows_with_advantages(gathered, cfg)
        result["local_groups"] = sorted({t.group_id for t in mine})
        result["local_traj_per_group"] = sorted({sum(t.group_id == g for t in mine) for g in result["local_groups"]})
        result["advantages"] = [r.advantage for r in rows]
        # ... and the real distributed collection: each rank plays its tasks, all get the batch
        from agents.policy import SamplingParams
        from agents.prompts import PromptBuilder
        from agents.simple import ExpertPolicy
        from algos.collection import collect_groups
        from envs import EnvPool

        prompt = PromptBuilder.for_env("sokoban", compact=True, history_length=0)
        with EnvPool("sokoban", num_envs=3 * G, num_workers=0, env_kwargs={"max_steps": 15}) as pool:
            ro = collect_groups(pool, ExpertPolicy(prompt.action_format, noise=0.5, seed=rank), list(range(100, 100 + TASKS)),
                                G, SamplingParams(seed=1), prompt, first_group_id=40)
        result["collected"] = [(t.group_id, t.traj_id, t.seed, t.episode_return) for t in ro.trajectories]
        result["collected_episodes"] = ro.metrics["episodes"]
        result["chats_before"] = [(t.rank, all(s.messages for s in t.steps)) for t in ro.trajectories]
        from algos.collection import gather_chats

        gather_chats(ro.trajectories)
        result["chats_after"] = [all(s.messages for s in t.steps) for t in ro.trajectories]
        # (2) a DDP update; (3) a critic update; (4) an FSDP update
        result["ddp"] = _update(model_dir)
        result["critic"] = _critic_update(model_dir)
        dist.set_context(dist.DistContext(rank=rank, world=world, mode="fsdp"))
        result["fsdp"] = _update(model_dir)
    finally:
        torch.save(result, Path(out) / f"rank{rank}.pt")
        dist.set_context(dist.DistContext())
        tdist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_model_dir):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist")
    batch = _expert_trajectories(list(range(7, 7 + TASKS)))
    (out / "batch.pkl").write_bytes(pickle.dumps(batch))
    mp.spawn(_worker, args=(2, _free_port(), str(out), str(tiny_model_dir)), nprocs=2, join=True)
    return batch, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_group_statistics_across_ranks_equal_the_single_process_ones(two_ranks):
    from algos.advantage_rows import rows_with_advantages

    batch, ranks = two_ranks
    cfg = apply_overrides(TrainConfig(), ["algo.name=gigpo", "algo.gigpo.mode=mean_std_norm"])
    single = [r.advantage for r in rows_with_advantages(batch, cfg)[0]]
    assert ranks[0]["local_groups"] == [0, 1] and ranks[1]["local_groups"] == [2, 3, 4]
    assert ranks[0]["local_traj_per_group"] == ranks[1]["local_traj_per_group"] == [G]  # whole groups only
    assert any(abs(a) > 1e-6 for a in single)
    for r in ranks:
        assert r["advantages"] == single  # exactly: the same complete groups, in the same order
    # real collection: every rank ends with the whole batch, single-process group and trajectory ids
    a, b = ranks[0]["collected"], ranks[1]["collected"]
    assert a == b and ranks[0]["collected_episodes"] == TASKS * G
    assert [g for g, *_ in a] == [40 + k // G for k in range(TASKS * G)]
    assert [t for _, t, *_ in a] == [40 * G + k for k in range(TASKS * G)]
    assert all(seed == 100 + (g - 40) for g, _, seed, _ in a)
    # each rank keeps the chats it played and gets the others' trajectories without them (they stay
    # where they were played); gather_chats brings them all to rank 0 for saving
    played_by = [0] * (2 * G) + [1] * (3 * G)  # tasks 0-1 on rank 0, 2-4 on rank 1
    for rank, r in enumerate(ranks):
        assert r["chats_before"] == [(p, p == rank) for p in played_by]
    assert all(ranks[0]["chats_after"]) and ranks[1]["chats_after"] == [p == 1 for p in played_by]


def _single_update(model_dir) -> dict:
    from algos import distributed as dist

    assert not dist.context().active
    return _update(str(model_dir))


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_one_update_matches_a_single_process_update(two_ranks, tiny_model_dir, mode):
    _, ranks = two_ranks
    single = _single_update(tiny_model_dir)
    r0, r1 = ranks[0][mode], ranks[1][mode]
    # each rank scores the rows it played (rows 0-2 on rank 0, 3-6 on rank 1) and only those
    assert [o is None for o in r0["old"]] == [False] * 3 + [True] * 4
    assert [o is None for o in r1["old"]] == [True] * 3 + [False] * 4
    for k, old in enumerate(single["old"]):
        torch.testing.assert_close((r0 if k < 3 else r1)["old"][k], old, rtol=1e-5, atol=1e-5)
    from agents.hf import HFPolicy

    start = HFPolicy(tiny_model_dir).model.state_dict()
    for k, w in single["weights"].items():
        torch.testing.assert_close(r0["weights"][k], r1["weights"][k], rtol=0, atol=0)  # ranks agree exactly
        torch.testing.assert_close(r0["weights"][k], w, rtol=1e-4, atol=2e-5)
    assert max(float((w - start[k]).abs().max()) for k, w in single["weights"].items()) > 1e-4  # it did move
    for key in ("loss", "grad_norm", "clip_frac"):
        assert r0["stats"][key] == pytest.approx(single["stats"][key], rel=1e-4, abs=1e-6)


def test_critic_update_across_ranks_matches_a_single_process_one(two_ranks, tiny_model_dir):
    """Each rank fits the critic on the rows it played; summed gradients keep the replicas equal
    to each other and to the critic one process fits on all rows."""
    _, ranks = two_ranks
    single = _critic_update(str(tiny_model_dir))
    r0, r1 = ranks[0]["critic"], ranks[1]["critic"]
    for k, w in single["weights"].items():
        torch.testing.assert_close(r0["weights"][k], r1["weights"][k], rtol=0, atol=0)
        torch.testing.assert_close(r0["weights"][k], w, rtol=1e-4, atol=2e-5)
    assert float(single["weights"]["head.bias"].abs().max()) > 1e-4  # the zero-initialised head moved
    for key, v in single["stats"].items():
        assert r0["stats"][key] == pytest.approx(v, rel=1e-4, abs=1e-6)


def _torchrun_train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "algos.cli", "train", f"out_dir={out}",
           "sft.episodes=6", "sft.epochs=1", "rl.iterations=2", "rl.tasks_per_iter=3", "rl.group_size=2",
           "rl.max_new_tokens=8", "eval.episodes=3", "eval.every=2", "save_every=1", "env.workers=0",
           "tensorboard=false", "progress=false", "env.kwargs={max_steps: 3}", "distributed.mode=ddp", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_torchrun_train_on_sokoban_writes_one_metrics_file_and_a_model(tmp_path):
    import shutil

    from algos.checkpoint import load_latest

    out = tmp_path / "run"
    p = _torchrun_train(out)
    assert sorted(f.name for f in out.glob("*.jsonl")) == ["metrics.jsonl"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "rollout/success" in r] == [1, 2]  # one writer, no duplicates
    assert all(r["rollout/episodes"] == 6 for r in records if "rollout/episodes" in r)  # both ranks' groups
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["iterations"] == 2
    from agents.hf import HFPolicy

    policy = HFPolicy(out / "final-model")
    assert sum(p.numel() for p in policy.model.parameters()) > 0
    assert p.stdout.count("evaluation before RL") == 1  # rank 0 alone speaks
    # resume from iteration 1 (as after a crash): iteration 2 comes out as in the uninterrupted run
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    shutil.rmtree(crashed / "checkpoints" / "ckpt-000002")
    (crashed / "checkpoints" / "latest").write_text("ckpt-000001\n")
    assert "resumed from iteration 1" in _torchrun_train(crashed, "--resume").stdout
    a, b = load_latest(out / "checkpoints"), load_latest(crashed / "checkpoints")
    assert a["iteration"] == b["iteration"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])
