"""Tests of RayEnvPool (envs/ray_pool.py) on a local two-CPU Ray instance started once for the module.

The same seeds give the same results as EnvPool; steps touch only the listed envs; an env that
raises, kills its actor or hangs fails only its own episode; a killed actor is replaced; close()
leaves no actor behind.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

if importlib.util.find_spec("ray") is None:
    pytest.skip('Ray is not installed (pip install "groupwise[ray]")', allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # actors resolve "tests.faulty_envs:..." like the pool's process does
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from envs import EnvFailure, EnvPool  # noqa: E402
from envs.ray_pool import RayEnvPool, init_ray, make_pool  # noqa: E402
from tests.faulty_envs import CounterEnv  # noqa: E402

pytestmark = pytest.mark.timeout(120)

envs.register("test-counter", "tests.faulty_envs:CounterEnv")
envs.register("test-faulty", "tests.faulty_envs:FaultyEnv")
BAD = 13  # FaultyEnv injects its fault into episodes seeded with this


@pytest.fixture(scope="module", autouse=True)
def ray():
    """One local Ray instance for the whole module (starting one takes several seconds)."""
    ray = init_ray(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()


def reference_state(seed: int, actions: list[str]) -> tuple[int, int]:
    """(value, steps) of a CounterEnv run in this process: what a pooled env must match."""
    env = CounterEnv()
    env.reset(seed=seed)
    for a in actions:
        env.step(a)
    return env.state()


def reference_text(seed: int, actions: list[str]) -> str:
    return "value={} steps={}".format(*reference_state(seed, actions))


def gone(pids: list[int], within: float = 10.0) -> bool:
    """True once none of `pids` is a running process (zombies count as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_local_instance_listens_on_loopback_only(ray):
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def _play(pool: EnvPool, steps: int) -> list:
    """Reset 4 Sokoban envs in two groups, play fixed random moves, reset the finished ones."""
    rng = np.random.default_rng(0)
    moves = ["up", "down", "left", "right"]
    obs, _ = pool.reset(seeds=[7, 7, 8, 8])
    trace = [obs]
    for t in range(steps):
        results = pool.step({i: moves[rng.integers(4)] for i in range(4)})
        trace.append([tuple(r) for r in results.values()])
        done = [i for i, r in results.items() if r.terminated or r.truncated]
        if done:
            trace.append(pool.reset(seeds=[100 + t] * len(done), indices=done))
    return trace


def test_same_seeds_give_the_same_results_as_envpool():
    kwargs = {"obs_mode": "both"}
    with EnvPool("sokoban", num_envs=4, num_workers=0, env_kwargs=kwargs) as pool:
        expected = _play(pool, steps=15)
    with RayEnvPool("sokoban", num_envs=4, num_workers=2, env_kwargs=kwargs) as pool:
        got = _play(pool, steps=15)
    assert repr(got) == repr(expected)  # the reprs of images are summaries: compare one too
    assert np.array_equal(got[1][0][0]["images"][0], expected[1][0][0]["images"][0])
    anchors = [o["anchor"] for o in got[0]]
    assert anchors[0] == anchors[1] != anchors[2] == anchors[3]  # grouped resets


def test_step_touches_only_the_listed_envs():
    with make_pool("ray", env_id="test-counter", num_envs=4, num_workers=2) as pool:
        assert isinstance(pool, RayEnvPool) and pool.num_envs == 4 and pool.num_workers == 2
        pool.reset(seeds=[1, 2, 3, 4])
        results = pool.step({3: "7", 0: "5"})
        assert list(results) == [3, 0]
        assert pool.call("state") == [reference_state(1, ["5"]), reference_state(2, []),
                                      reference_state(3, []), reference_state(4, ["7"])]
        pool.reset(seeds=[9], indices=[1])  # resets env 1 only
        assert pool.call("state", [0, 1]) == [reference_state(1, ["5"]), reference_state(9, [])]
        with pytest.raises(IndexError):
            pool.step({4: "1"})


def _assert_failed(result, error_part: str, last_obs: dict) -> None:
    obs, reward, terminated, truncated, info = result
    assert truncated and not terminated and reward == 0.0
    assert info["failed"] and not info["won"] and not info["valid_action"]
    assert error_part in info["error"]
    assert obs == last_obs


@pytest.mark.parametrize("mode, error", [("raise", "RuntimeError: injected fault at step 2"),
                                         ("kill", "actor died")])
def test_crashing_env_fails_only_its_episode(mode, error):
    # Envs 0 and 2 share actor 0; env 2 fails on its second step.
    seeds = [1, 2, BAD, 3]
    with RayEnvPool("test-faulty", num_envs=4, num_workers=2,
                    env_kwargs={"mode": mode, "at_step": 2}) as pool:
        pool.reset(seeds=seeds)
        before = pool.step({i: "1" for i in range(4)})
        pids = pool.worker_pids
        after = pool.step({i: "1" for i in range(4)})
        _assert_failed(after[2], error, before[2].obs)
        for i in (0, 1, 3):
            assert not after[i].truncated
            assert after[i].obs["text"] == reference_text(seeds[i], ["1", "1"])
        if mode == "kill":
            assert "during step" in after[2].info["error"]
            assert pool.worker_pids[0] != pids[0] and pool.worker_pids[1] == pids[1]
        # the failed env stays failed until it is reset; the others go on
        assert pool.step({2: "1"})[2].info["error"] == after[2].info["error"]
        with pytest.raises(EnvFailure, match="reset them first"):
            pool.call("state", [2])
        assert pool.call("state", [0, 1, 3]) == [reference_state(s, ["1", "1"]) for s in (1, 2, 3)]
        pool.reset(seeds=[5], indices=[2])
        assert not pool.step({2: "1"})[2].truncated


def test_hanging_env_times_out_and_only_its_episode_fails():
    seeds = [1, 2, BAD, 3]
    with RayEnvPool("test-faulty", num_envs=4, num_workers=2, timeout=1.0,
                    env_kwargs={"mode": "hang", "at_step": 2, "hang_seconds": 60}) as pool:
        pool.reset(seeds=seeds)
        before = pool.step({i: "1" for i in range(4)})
        pids = pool.worker_pids
        start = time.monotonic()
        hung = pool.step({i: "1" for i in range(4)})
        assert 1.0 <= time.monotonic() - start < 20.0
        _assert_failed(hung[2], "timeout after 1s during step", before[2].obs)
        assert gone([pids[0]]) and pool.worker_pids[1] == pids[1]
        for i in (0, 1, 3):
            assert hung[i].obs["text"] == reference_text(seeds[i], ["1", "1"])
        nxt = pool.step({i: "2" for i in range(4)})
        assert nxt[2].info["failed"]
        assert pool.call("state", [0, 1, 3]) == [reference_state(s, ["1", "1", "2"]) for s in (1, 2, 3)]


def test_killed_actor_is_replaced_and_its_envs_restored(ray):
    seeds = [1, 2, 3, 4]
    with RayEnvPool("test-counter", num_envs=4, num_workers=2) as pool:
        pool.reset(seeds=seeds)
        pool.step({i: "3" for i in range(4)})
        old = pool.worker_pids
        ray.kill(pool.actors[1])  # hosts envs 1 and 3; ray.kill returns before the actor is dead
        assert gone([old[1]])
        results = pool.step({i: "4" for i in range(4)})
        assert not any(r.info.get("failed") for r in results.values())  # no env was to blame
        assert [r.obs["text"] for r in results.values()] == [reference_text(s, ["3", "4"]) for s in seeds]
        assert pool.worker_pids[1] != old[1] and pool.worker_pids[0] == old[0]


def test_env_that_cannot_be_built_raises_envfailure():
    with pytest.raises(EnvFailure, match="unknown option"):
        RayEnvPool("test-counter", num_envs=2, num_workers=2, env_kwargs={"no_such_option": 1})
    with pytest.raises(envs.UnknownEnvError):
        make_pool("ray", env_id="test-countr", num_envs=2)
    with make_pool("process", "test-counter", num_envs=2, num_workers=0) as pool:
        assert type(pool) is EnvPool
    with pytest.raises(ValueError, match="unknown pool backend"):
        make_pool("threads", env_id="test-counter", num_envs=2)


def test_close_leaves_no_actors(ray):
    pool = RayEnvPool("test-counter", num_envs=4, num_workers=2)
    pool.reset(seeds=[1, 2, 3, 4])
    actors, pids = pool.actors, pool.worker_pids
    pool.close()
    pool.close()  # closing twice is fine
    assert gone(pids)
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.build.remote(), timeout=30)
    with pytest.raises(RuntimeError, match="closed"):
        pool.step({0: "1"})


def test_cli_rollout_on_ray_actors(capsys):
    from algos.cli import main

    assert main(["rollout", "--env", "sokoban", "--policy", "expert", "--episodes", "4", "--group-size", "2",
                 "--pool", "ray"]) == 0
    report = json.loads(capsys.readouterr().out.split("wrote")[0].strip() or "{}")
    assert report["episodes"] == 4 and report["success"] == 1.0
