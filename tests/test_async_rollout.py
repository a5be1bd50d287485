"""Async rollout: EnvPool/RayEnvPool submit+poll, and collect(mode="async") against the sync engine."""

from __future__ import annotations

import importlib.util
import time

import pytest

import envs
from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.rollout import collect
from agents.simple import ExpertPolicy
from envs import EnvPool
from tests.faulty_envs import CounterEnv

envs.register("test-counter", "tests.faulty_envs:CounterEnv")
envs.register("test-faulty", "tests.faulty_envs:FaultyEnv")
envs.register("slow-sokoban", "tests.latency_env:SlowSokobanEnv")
BAD = 13  # FaultyEnv's fault seed


def reference_text(seed: int, actions: list[str]) -> str:
    env = CounterEnv()
    obs, _ = env.reset(seed=seed)
    for a in actions:
        obs = env.step(a)[0]
    return obs["text"]


def _drain(pool, until: set[int]) -> dict:
    got = {}
    while not until <= got.keys():
        got.update(pool.poll(5.0))
    return got


def test_submit_poll_matches_step_and_keeps_pool_rules():
    with EnvPool("test-faulty", num_envs=4, num_workers=4, timeout=1.0,
                 env_kwargs={"mode": "hang", "at_step": 2, "hang_seconds": 30}) as pool:
        pool.reset(seeds=[1, 2, BAD, 3])
        assert pool.poll(0.0) == {}  # nothing submitted
        pool.submit({0: "1", 1: "2"})
        assert pool.pending == {0, 1}
        with pytest.raises(ValueError, match="already has a submitted step"):
            pool.submit({0: "1"})
        with pytest.raises(ValueError, match="poll"):
            pool.reset(seeds=[5], indices=[0])
        pool.submit({2: "1", 3: "1"})  # a step for other envs while the first ones run
        got = _drain(pool, {0, 1, 2, 3})
        assert pool.pending == set()
        assert got[0].obs["text"] == reference_text(1, ["1"]) and got[1].obs["text"] == reference_text(2, ["2"])
        # env 2 hangs on its second step: only it fails, after the same timeout as step()
        t0 = time.monotonic()
        pool.submit({i: "1" for i in range(4)})
        got = _drain(pool, {0, 1, 2, 3})
        assert time.monotonic() - t0 < 10
        assert got[2].truncated and got[2].info["failed"] and "timeout" in got[2].info["error"]
        assert not any(got[i].truncated for i in (0, 1, 3))
        assert got[0].obs["text"] == reference_text(1, ["1", "1"])
        # a step() in between leaves other envs' submitted results for poll()
        pool.submit({0: "3"})
        assert pool.step({1: "1"})[1].obs["text"] == reference_text(2, ["2", "1", "1"])
        assert _drain(pool, {0})[0].obs["text"] == reference_text(1, ["1", "1", "3"])
        assert pool.call("state", [0])[0][1] == 3  # call() works once the result is polled


def _records(rollout) -> list[tuple]:
    """Every recorded field of every step, in result order (logprobs compared separately)."""
    return [(s.group_id, s.traj_id, s.turn, s.messages, s.prompt_ids, s.response_ids, s.response, s.action,
             s.well_formed, s.valid, s.reward, s.anchor, s.observation, s.done, s.truncated_response, s.info)
            for s in rollout.steps]


def _same(sync, asyn) -> None:
    assert [(t.traj_id, t.group_id, t.seed, t.length, t.won, t.truncated) for t in sync.trajectories] == \
        [(t.traj_id, t.group_id, t.seed, t.length, t.won, t.truncated) for t in asyn.trajectories]
    assert _records(sync) == _records(asyn)
    for a, b in zip(sync.steps, asyn.steps):
        # float32 rounding differs with the batch's padding (seen: 5e-7); the tokens do not
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


class Watcher:
    """Wraps a policy; notes, per generate call, the batch size and the steps still in flight."""

    def __init__(self, inner, pool):
        self.inner, self.pool = inner, pool
        self.needs_expert_action = inner.needs_expert_action
        self.calls: list[tuple[int, int]] = []

    def generate(self, requests, sampling):
        self.calls.append((len(requests), len(self.pool.pending)))
        return self.inner.generate(requests, sampling)


@pytest.mark.parametrize("env_id, workers", [("sokoban", 2), ("slow-sokoban", 4)])
def test_greedy_async_records_what_sync_records(tiny_model_dir, env_id, workers):
    from agents.hf import HFPolicy

    policy = HFPolicy(tiny_model_dir)
    prompt = PromptBuilder.for_env("sokoban")
    greedy = SamplingParams(greedy=True, max_new_tokens=8)
    kw = {"max_delay": 0.05} if env_id == "slow-sokoban" else {}
    with EnvPool(env_id, num_envs=8, num_workers=workers, env_kwargs=kw) as pool:
        sync = collect(pool, policy, [0, 1, 2, 3], 2, greedy, prompt, max_turns=6, first_group_id=3)
        watch = Watcher(policy, pool)
        asyn = collect(pool, watch, [0, 1, 2, 3], 2, greedy, prompt, max_turns=6, first_group_id=3, mode="async")
    _same(sync, asyn)
    # never a request for a finished episode: one per recorded step
    assert sum(n for n, _ in watch.calls) == len(asyn.steps)
    if env_id == "slow-sokoban":  # generation overlapped env steps still in flight
        assert any(inflight for _, inflight in watch.calls)


def test_async_expert_on_uneven_latency_and_failures():
    """Expert play (uneven episode lengths) with an env that crashes its worker mid-episode."""
    prompt = PromptBuilder.for_env("sokoban")
    with EnvPool("slow-sokoban", num_envs=8, num_workers=8, env_kwargs={"max_delay": 0.05}) as pool:
        sync = collect(pool, ExpertPolicy(prompt.action_format), [5, 6, 7, 8], 2, prompt=prompt)
        asyn = collect(pool, ExpertPolicy(prompt.action_format), [5, 6, 7, 8], 2, prompt=prompt, mode="async")
    _same(sync, asyn)
    assert asyn.metrics["success"] == 1.0 and len({t.length for t in asyn.trajectories}) > 1

    class Counter:  # always "+1": FaultyEnv kills its worker at step 3
        needs_expert_action = False

        def generate(self, requests, sampling):
            from agents.policy import Generation
            return [Generation(text="<action>1</action>") for _ in requests]

    with EnvPool("test-faulty", num_envs=4, num_workers=2, env_kwargs={"mode": "kill", "at_step": 3}) as pool:
        sync = collect(pool, Counter(), [1, BAD], 2, max_turns=5)
        asyn = collect(pool, Counter(), [1, BAD], 2, max_turns=5, mode="async")
    _same(sync, asyn)
    failed = [t for t in asyn.trajectories if t.error]
    assert [t.seed for t in failed] == [BAD, BAD] and all("worker died" in t.error for t in failed)
    assert all(t.error is None for t in asyn.trajectories if t.seed == 1)


def test_async_mode_checks():
    with EnvPool("sokoban", num_envs=2, num_workers=0) as pool:
        with pytest.raises(ValueError, match="mode"):
            collect(pool, ExpertPolicy(), [0], 2, mode="fast")
        ro = collect(pool, ExpertPolicy(PromptBuilder.for_env("sokoban").action_format), [0], 2,
                     prompt=PromptBuilder.for_env("sokoban"), mode="async")  # in-process pool: no overlap, same API
        assert ro.metrics["success"] == 1.0
    with pytest.raises(TypeError, match="submit"):
        collect(object(), ExpertPolicy(), [0], 1, mode="async")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_pool_async_collect_and_failures():
    import sys

    from envs.ray_pool import RayEnvPool

    # A Ray this test starts is shut down after it: a raylet left running prints its log lines
    # into the stderr of later tests in this process.
    started = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    try:
        prompt = PromptBuilder.for_env("sokoban")
        with RayEnvPool("slow-sokoban", num_envs=4, num_workers=2, num_cpus_per_worker=0,
                        env_kwargs={"max_delay": 0.05}) as pool:
            sync = collect(pool, ExpertPolicy(prompt.action_format), [5, 6], 2, prompt=prompt)
            asyn = collect(pool, ExpertPolicy(prompt.action_format), [5, 6], 2, prompt=prompt, mode="async")
        _same(sync, asyn)
        with RayEnvPool("test-faulty", num_envs=4, num_workers=2, num_cpus_per_worker=0, timeout=1.0,
                        env_kwargs={"mode": "hang", "at_step": 1, "hang_seconds": 30}) as pool:
            pool.reset(seeds=[1, 2, BAD, 3])
            pool.submit({i: "1" for i in range(4)})
            got = _drain(pool, {0, 1, 2, 3})
            assert got[2].info["failed"] and "timeout" in got[2].info["error"]
            assert [got[i].obs["text"] for i in (0, 1, 3)] == [reference_text(s, ["1"]) for s in (1, 2, 3)]
    finally:
        if started and "ray" in sys.modules:
            sys.modules["ray"].shutdown()


def test_train_with_async_rollout(tmp_path, tiny_model_dir):
    import json

    from algos.train import main

    assert main([f"out_dir={tmp_path}", "--model", str(tiny_model_dir), "model.lora=off", "sft.enabled=false",
                 "rl.async_rollout=true", "rl.iterations=1", "rl.tasks_per_iter=2", "rl.group_size=2",
                 "rl.max_new_tokens=8", "eval.episodes=2", "env.workers=2", "tensorboard=false",
                 "progress=false"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rollout = [m for m in metrics if "rollout/episodes" in m]
    assert rollout and rollout[0]["rollout/episodes"] == 4 and "train/loss" in rollout[0]
