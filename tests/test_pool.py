"""Tests of EnvPool (envs/pool.py): grouped resets, subset steps, fault isolation, clean shutdown."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # workers resolve "tests.faulty_envs:..." through the parent's sys.path
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from envs import EnvFailure, EnvPool  # noqa: E402
from tests.faulty_envs import CounterEnv  # noqa: E402

pytestmark = pytest.mark.timeout(60)

envs.register("test-counter", "tests.faulty_envs:CounterEnv")
envs.register("test-faulty", "tests.faulty_envs:FaultyEnv")
BAD = 13  # FaultyEnv injects its fault into episodes seeded with this


def _has_sokoban() -> bool:
    try:
        envs.spec("sokoban").load()
        return True
    except ImportError:
        return False


SOKOBAN = pytest.param("sokoban", marks=pytest.mark.skipif(not _has_sokoban(), reason="no envs/sokoban.py"))


def reference_state(seed: int, actions: list[str]) -> tuple[int, int]:
    """(value, steps) of a CounterEnv run in this process: what a pooled env must match."""
    env = CounterEnv()
    env.reset(seed=seed)
    for a in actions:
        env.step(a)
    return env.state()


def reference_text(seed: int, actions: list[str]) -> str:
    return "value={} steps={}".format(*reference_state(seed, actions))


_MP_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def stray_children(baseline: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """Descendants of this process, except multiprocessing's process-wide helpers and `baseline`.

    The fork server and the resource tracker are started once per parent by multiprocessing itself
    (not per pool) and exit with the parent; pool workers are forked from the fork server, so they
    are its children, never direct children of ours. `baseline` holds pids that existed before the
    test (other tests in the same session may have started processes of their own).
    """
    me = psutil.Process()
    stray = []
    for proc in me.children(recursive=True):
        try:
            helper = proc.ppid() == me.pid and any(h in " ".join(proc.cmdline()) for h in _MP_HELPERS)
            if not helper and proc.pid not in baseline and proc.status() != psutil.STATUS_ZOMBIE:
                stray.append(proc)
        except psutil.NoSuchProcess:
            pass
    return stray


def children_now() -> frozenset[int]:
    return frozenset(p.pid for p in stray_children())


def gone(pids: list[int], within: float = 5.0) -> bool:
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


# -- grouped resets and subsets ---------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["test-counter", SOKOBAN])
def test_grouped_reset_gives_identical_starts_within_a_group(env_id):
    with EnvPool(env_id, num_envs=8, num_workers=2) as pool:
        obs, infos = pool.reset(seeds=[0] * 4 + [1] * 4)
    anchors = [o["anchor"] for o in obs]
    assert len(set(anchors[:4])) == 1 and len(set(anchors[4:])) == 1
    assert anchors[0] != anchors[4]
    assert [o["text"] for o in obs[:4]] == [obs[0]["text"]] * 4
    assert all(not i.get("failed") for i in infos)


def test_stepping_a_subset_leaves_the_others_untouched():
    with EnvPool("test-counter", num_envs=4, num_workers=2) as pool:
        pool.reset(seeds=[1, 2, 3, 4])
        results = pool.step({0: "5", 3: "7"})
        assert list(results) == [0, 3]
        assert pool.call("state") == [reference_state(1, ["5"]), reference_state(2, []),
                                      reference_state(3, []), reference_state(4, ["7"])]


def test_reset_prefix_indices_and_options():
    with EnvPool("test-counter", num_envs=6, num_workers=2) as pool:
        obs, _ = pool.reset(seeds=[1, 2, 3])  # fewer seeds than envs: envs 0..2 only
        assert len(obs) == 3
        with pytest.raises(ValueError, match="has not been reset"):
            pool.step({4: "1"})
        pool.step({0: "1", 1: "1", 2: "1"})
        pool.reset(seeds=[9], indices=[4])
        assert pool.call("state", [0, 4]) == [reference_state(1, ["1"]), reference_state(9, [])]
        obs, _ = pool.reset(seeds=[5, 5], options=[{"offset": 0}, {"offset": 3}], indices=[5, 1])
        v0, v1 = (int(o["anchor"].split("=")[1]) for o in obs)
        assert v1 - v0 == 3
        with pytest.raises(ValueError, match="between 1 and num_envs=6"):
            pool.reset(seeds=list(range(7)))
        with pytest.raises(ValueError, match="one seed per index"):
            pool.reset(seeds=[1, 2], indices=[0])
        with pytest.raises(IndexError):
            pool.step({6: "1"})


def _play(pool: EnvPool, env_id: str, steps: int) -> list:
    """Reset 4 envs in two groups and play fixed pseudo-random actions, resetting finished ones."""
    rng = np.random.default_rng(0)
    actions = ["up", "down", "left", "right"] if env_id == "sokoban" else ["1", "2", "3"]
    obs, _ = pool.reset(seeds=[7, 7, 8, 8])
    trace = [obs]
    for t in range(steps):
        results = pool.step({i: actions[rng.integers(len(actions))] for i in range(4)})
        trace.append([(r.obs, r.reward, r.terminated, r.truncated, r.info) for r in results.values()])
        done = [i for i, r in results.items() if r.terminated or r.truncated]
        if done:
            trace.append(pool.reset(seeds=[100 + t] * len(done), indices=done))
    return trace


@pytest.mark.parametrize("env_id", ["test-counter", SOKOBAN])
def test_in_process_mode_matches_workers(env_id):
    kwargs = {"obs_mode": "both"} if env_id == "sokoban" else {}
    traces = []
    for workers in (0, 2):
        with EnvPool(env_id, num_envs=4, num_workers=workers, env_kwargs=kwargs) as pool:
            traces.append(_play(pool, env_id, steps=20))
    # repr compares nested dicts, tuples and numpy images (reprs of the image arrays are
    # summaries, so compare the images themselves too)
    assert repr(traces[0]) == repr(traces[1])
    if env_id == "sokoban":
        first = traces[0][1][0][0]["images"][0], traces[1][1][0][0]["images"][0]
        assert first[0].dtype == np.uint8 and np.array_equal(*first)


# -- fault isolation ----------------------------------------------------------------------------


def _assert_failed(result, error_part: str, last_obs: dict) -> None:
    obs, reward, terminated, truncated, info = result
    assert truncated and not terminated and reward == 0.0
    assert info["failed"] and not info["won"] and not info["valid_action"]
    assert error_part in info["error"]
    assert obs == last_obs


@pytest.mark.parametrize("workers", [0, 2])
def test_env_raising_on_step_fails_only_its_episode(workers):
    seeds = [1, BAD, 2, 3]
    with EnvPool("test-faulty", num_envs=4, num_workers=workers,
                 env_kwargs={"mode": "raise", "at_step": 2}) as pool:
        pool.reset(seeds=seeds)
        first = pool.step({i: "1" for i in range(4)})
        second = pool.step({i: "1" for i in range(4)})
        _assert_failed(second[1], "RuntimeError: injected fault at step 2", first[1].obs)
        assert "faulty_envs.py" in second[1].info["error"]  # traceback summary
        for i in (0, 2, 3):
            assert not second[i].truncated
            assert second[i].obs["text"] == reference_text(seeds[i], ["1", "1"])
        # the failed env stays failed until it is reset; the others go on
        again = pool.step({0: "1", 1: "1"})
        assert again[1].info["error"] == second[1].info["error"]
        assert pool.call("state", [0]) == [reference_state(1, ["1"] * 3)]
        with pytest.raises(EnvFailure, match="reset them first"):
            pool.call("state", [1])
        pool.reset(seeds=[5], indices=[1])
        assert not pool.step({1: "1"})[1].truncated


def test_env_hanging_past_the_timeout_fails_only_its_episode():
    # Envs 0 and 2 share worker 0; env 2 hangs on its third step, after env 0 took its step.
    seeds = [1, 2, BAD, 3]
    with EnvPool("test-faulty", num_envs=4, num_workers=2, timeout=2.0,
                 env_kwargs={"mode": "hang", "at_step": 3, "hang_seconds": 60}) as pool:
        pool.reset(seeds=seeds)
        for _ in range(2):
            before = pool.step({i: "1" for i in range(4)})
        pids = pool.worker_pids
        start = time.monotonic()
        hung = pool.step({i: "1" for i in range(4)})
        assert 2.0 <= time.monotonic() - start < 10.0
        _assert_failed(hung[2], "timeout after 2s during step", before[2].obs)
        assert pool.worker_pids[1] == pids[1] and pool.worker_pids[0] != pids[0]
        assert gone([pids[0]])
        # siblings, including env 0 on the replaced worker, advanced exactly once per step call
        for i in (0, 1, 3):
            assert hung[i].obs["text"] == reference_text(seeds[i], ["1"] * 3)
        # the pool keeps working
        nxt = pool.step({i: "2" for i in range(4)})
        assert nxt[2].info["failed"]
        assert pool.call("state", [0, 1, 3]) == [reference_state(s, ["1"] * 3 + ["2"]) for s in (1, 2, 3)]


@pytest.mark.parametrize("mode, code", [("exit", "exit code 1"), ("kill", "exit code -9")])
def test_env_killing_its_worker_fails_only_its_episode(mode, code):
    seeds = [1, 2, BAD, 3]
    with EnvPool("test-faulty", num_envs=4, num_workers=2, env_kwargs={"mode": mode, "at_step": 2}) as pool:
        pool.reset(seeds=seeds)
        before = pool.step({i: "1" for i in range(4)})
        pid = pool.worker_pids[0]
        died = pool.step({i: "1" for i in range(4)})
        _assert_failed(died[2], f"worker died ({code}) during step", before[2].obs)
        assert gone([pid]) and pool.worker_pids[0] != pid
        for i in (0, 1, 3):
            assert died[i].obs["text"] == reference_text(seeds[i], ["1", "1"])
        assert pool.call("state", [0, 1, 3]) == [reference_state(s, ["1", "1"]) for s in (1, 2, 3)]


@pytest.mark.parametrize("mode, error", [("reset-raise", "RuntimeError"), ("reset-kill", "worker died")])
def test_failed_reset_gives_a_failed_result(mode, error):
    with EnvPool("test-faulty", num_envs=4, num_workers=2, env_kwargs={"mode": mode}) as pool:
        obs, infos = pool.reset(seeds=[1, 2, BAD, 3])
        assert infos[2]["failed"] and error in infos[2]["error"] and obs[2]["text"] == ""
        assert not any(infos[i].get("failed") for i in (0, 1, 3))
        results = pool.step({i: "1" for i in range(4)})
        _assert_failed(results[2], error, obs[2])
        assert results[0].obs["text"] == reference_text(1, ["1"])


@pytest.mark.parametrize("mode, error", [("unpicklable", "could not be pickled"),
                                         ("unloadable", "could not be unpickled in the pool's process")])
def test_result_that_does_not_pickle_fails_only_its_env(mode, error):
    seeds = [1, BAD, 2, 3]
    with EnvPool("test-faulty", num_envs=4, num_workers=2, env_kwargs={"mode": mode, "at_step": 2}) as pool:
        pool.reset(seeds=seeds)
        pool.step({i: "1" for i in range(4)})
        results = pool.step({i: "1" for i in range(4)})
        assert error in results[1].info["error"] and results[1].info["failed"]
        for i in (0, 2, 3):  # env 3 shares env 1's worker
            assert results[i].obs["text"] == reference_text(seeds[i], ["1", "1"])
        assert pool.call("state", [0, 2, 3]) == [reference_state(s, ["1", "1"]) for s in (1, 2, 3)]


# -- call, construction errors, registration ----------------------------------------------------


def test_call_returns_results_in_the_order_asked():
    with EnvPool("test-counter", num_envs=4, num_workers=2) as pool:
        pool.reset(seeds=[1, 2, 3, 4])
        expected = {}
        for i, seed in enumerate([1, 2, 3, 4]):
            env = CounterEnv()
            env.reset(seed=seed)
            expected[i] = env.expert_action()
        assert pool.call("expert_action", [3, 0, 3]) == [expected[3], expected[0], expected[3]]
        assert pool.call("instructions", [1]) == [CounterEnv.instructions]  # plain attribute
        with pytest.raises(EnvFailure, match="explode") as caught:
            pool.call("explode", [1, 2])
        assert set(caught.value.failures) == {1, 2}
        assert "ValueError" in caught.value.failures[1]
        assert pool.call("state", [1]) == [reference_state(2, [])]  # a raising query fails nothing


def test_call_that_hangs_fails_that_env_and_raises():
    with EnvPool("test-faulty", num_envs=4, num_workers=2, timeout=1.0,
                 env_kwargs={"mode": "expert-hang"}) as pool:
        pool.reset(seeds=[1, 2, BAD, 3])
        pool.step({i: "1" for i in range(4)})
        with pytest.raises(EnvFailure, match=r"timeout after 1s during expert_action\(\)") as caught:
            pool.call("expert_action")
        assert list(caught.value.failures) == [2]
        assert pool.step({2: "1"})[2].info["failed"]
        assert pool.call("state", [0, 1, 3]) == [reference_state(s, ["1"]) for s in (1, 2, 3)]


def test_unknown_env_id_raises_the_registry_error():
    before = children_now()
    with pytest.raises(envs.UnknownEnvError, match="unknown environment 'test-countr'.*Did you mean"):
        EnvPool("test-countr", num_envs=2, num_workers=2)
    assert stray_children(before) == []


def test_env_that_cannot_be_built_raises_envfailure():
    before = children_now()
    with pytest.raises(EnvFailure, match="unknown option") as caught:
        EnvPool("test-counter", num_envs=2, num_workers=2, env_kwargs={"no_such_option": 1})
    assert isinstance(caught.value.__cause__, TypeError)
    assert stray_children(before) == []


def test_env_registered_at_run_time_with_a_class_works_in_workers():
    envs.register("test-counter-class", CounterEnv, max_steps=2)  # a class object, not a string
    with EnvPool("test-counter-class", num_envs=2, num_workers=2) as pool:
        pool.reset(seeds=[1, 2])
        pool.step({0: "1", 1: "1"})
        assert all(r.truncated or r.terminated for r in pool.step({0: "1", 1: "1"}).values())
    envs.register("test-lambda", lambda: CounterEnv())
    with pytest.raises(TypeError, match="must pickle"):
        EnvPool("test-lambda", num_envs=2, num_workers=1)


# -- process hygiene ----------------------------------------------------------------------------


def test_close_leaves_no_child_process():
    before = children_now()
    with EnvPool("test-counter", num_envs=4, num_workers=2) as pool:
        pool.reset(seeds=[1, 2, 3, 4])
        assert sorted(p.pid for p in stray_children(before)) == sorted(pool.worker_pids)
    assert stray_children(before) == []
    pool.close()  # closing twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        pool.step({0: "1"})


def test_forgotten_pool_is_cleaned_up_by_its_finalizer():
    before = children_now()
    pool = EnvPool("test-counter", num_envs=2, num_workers=2)
    pids = pool.worker_pids
    del pool
    gc.collect()
    assert gone(pids) and stray_children(before) == []


def test_workers_exit_when_the_parent_dies():
    # A child Python builds a pool, starts a step in which env 0 hangs (its worker is busy, not
    # reading its pipe), reports the workers' pids, then dies by SIGKILL: no cleanup runs.
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        import envs
        from envs import EnvPool
        envs.register("test-faulty", "tests.faulty_envs:FaultyEnv")
        if __name__ == "__main__":
            pool = EnvPool("test-faulty", num_envs=2, num_workers=2, env_kwargs={{"mode": "hang"}})
            pool.reset(seeds=[{BAD}, 2])
            threading.Thread(target=pool.step, args=({{0: "1"}},), daemon=True).start()
            time.sleep(0.5)
            print(" ".join(map(str, pool.worker_pids)), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2, proc.stderr
    assert gone(pids, within=10.0)
