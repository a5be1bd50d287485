"""The multi-turn rollout engine, its records, and the `groupwise` command."""

import json
import subprocess
import sys

import pytest

from agents.policy import Generation, SamplingParams
from agents.prompts import PromptBuilder
from agents.records import read_jsonl, write_jsonl
from agents.rollout import collect
from agents.simple import ExpertPolicy, RandomPolicy
from envs import EnvPool


class Babbler:
    """Writes malformed text on every other call and counts what it is asked (fault injection)."""

    needs_expert_action = False

    def __init__(self):
        self.batch_sizes = []

    def generate(self, requests, sampling):
        self.batch_sizes.append(len(requests))
        bad = len(self.batch_sizes) % 2 == 1
        return [Generation(text="lol no tags" if bad else "<action>left</action>", response_ids=[1, 2],
                           logprobs=[-0.5, -0.25]) for _ in requests]


@pytest.fixture(scope="module")
def pool():
    with EnvPool("sokoban", num_envs=16, num_workers=0) as p:
        yield p


def test_expert_wins_everything_and_records_every_field(pool):
    prompt = PromptBuilder.for_env("sokoban")
    ro = collect(pool, ExpertPolicy(prompt.action_format), seeds=[0, 1, 2, 3], group_size=4, prompt=prompt)
    assert ro.metrics["success"] == 1.0 and ro.metrics["invalid_rate"] == 0.0
    assert len(ro.trajectories) == 16
    for t in ro.trajectories:
        assert [s.turn for s in t.steps] == list(range(t.length))
        assert t.steps[-1].done and not any(s.done for s in t.steps[:-1])
        assert t.episode_return == pytest.approx(sum(s.reward for s in t.steps))
        assert all(s.episode_return == t.episode_return for s in t.steps)
        assert all(s.group_id == t.group_id and s.traj_id == t.traj_id for s in t.steps)
    assert len({t.traj_id for t in ro.trajectories}) == 16


def test_groups_share_start_state_and_differ_across_groups(pool):
    ro = collect(pool, RandomPolicy(seed=0), seeds=[10, 11, 12, 13], group_size=4)
    first = {}
    for t in ro.trajectories:
        first.setdefault(t.group_id, set()).add(t.steps[0].anchor)
    assert all(len(a) == 1 for a in first.values())  # identical within a group
    assert len({next(iter(a)) for a in first.values()}) == 4  # different across groups


def test_malformed_text_is_an_invalid_step_and_finished_envs_get_no_requests(pool):
    babbler = Babbler()
    ro = collect(pool, babbler, seeds=[5, 6], group_size=3, max_turns=40)
    steps = ro.steps
    bad = [s for s in steps if s.response == "lol no tags"]
    assert bad and all(not s.valid and not s.well_formed and "no <action>" in s.parse_reason for s in bad)
    assert ro.metrics["malformed_rate"] > 0
    # one request per running episode per turn: the batch sizes are exactly the live counts
    live = [sum(1 for t in ro.trajectories if t.length > turn) for turn in range(len(babbler.batch_sizes))]
    assert babbler.batch_sizes == live
    assert ro.metrics["tokens_generated"] == 2 * len(steps)


def test_engine_refuses_more_episodes_than_envs(pool):
    with pytest.raises(ValueError, match="pool holds only 16"):
        collect(pool, RandomPolicy(), seeds=list(range(5)), group_size=4)


def test_jsonl_round_trip(pool, tmp_path):
    ro = collect(pool, Babbler(), seeds=[1], group_size=2, max_turns=3)
    path = write_jsonl(ro.trajectories, tmp_path / "t.jsonl")
    back = read_jsonl(path)
    assert [t.to_json() for t in back] == [json.loads(json.dumps(t.to_json())) for t in ro.trajectories]
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_prompt_keeps_last_k_pairs():
    pb = PromptBuilder(instructions="Do it.", history_length=2)
    msg = pb.messages("now", [("a", "1"), ("b", "2"), ("c", "3")], step=3, admissible=["x", "y"])[0]["content"]
    assert "Observation (step 1):\nb\nAction: 2" in msg and "Observation (step 2):\nc\nAction: 3" in msg
    assert "\na\n" not in msg and msg.endswith("Admissible actions: x, y")
    assert "Current observation (step 3):\nnow" in msg


def test_tiny_model_drives_a_rollout_with_logprobs(tiny_model_dir):
    from agents.hf import HFPolicy

    policy = HFPolicy(tiny_model_dir)
    with EnvPool("sokoban", num_envs=4, num_workers=1) as p:
        ro = collect(p, policy, seeds=[0, 1], group_size=2,
                     sampling=SamplingParams(max_new_tokens=8, seed=0), prompt=PromptBuilder.for_env("sokoban"))
    assert ro.metrics["episodes"] == 4
    for s in ro.steps:
        assert s.response_ids and len(s.logprobs) == len(s.response_ids)
        assert all(lp <= 0 for lp in s.logprobs) and s.prompt_ids


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "algos.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_rollout_expert_reports_full_success(tmp_path):
    out = tmp_path / "expert.jsonl"
    r = _cli("rollout", "--env", "sokoban", "--policy", "expert", "--episodes", "64", "--group-size", "4",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert metrics["success"] == 1.0 and metrics["episodes"] == 64
    assert len(read_jsonl(out)) == 64


def test_cli_envs_and_clear_errors():
    r = _cli("envs")
    assert r.returncode == 0 and "sokoban" in r.stdout
    r = _cli("rollout", "--env", "sokobn", "--policy", "expert")
    assert r.returncode != 0 and "Did you mean 'sokoban'" in r.stderr
    r = _cli("rollout", "--env", "sokoban", "--policy", "/no/such/model")
    assert r.returncode != 0 and "/no/such/model" in r.stderr
    r = _cli("rollout", "--env", "sokoban", "--episodes", "5", "--group-size", "2")
    assert r.returncode != 0 and "multiple of --group-size" in r.stderr


def test_cli_play_reads_moves_from_stdin():
    r = subprocess.run([sys.executable, "-m", "algos.cli", "play", "sokoban", "--seed", "2"],
                       input="?\nfly\nq\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "expert:" in r.stdout and "valid False" in r.stdout


def test_jsonl_stores_chat_frames_as_png_and_reads_them_back(tmp_path):
    import numpy as np

    from agents.records import StepRecord, Trajectory

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(21, 16, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "image", "image": frame}, {"type": "text", "text": "go"}]}]
    step = StepRecord(group_id=0, traj_id=0, turn=0, messages=messages, prompt_ids=[1], response_ids=[2],
                      logprobs=[-0.5], response="<action>up</action>", action="up", well_formed=True,
                      parse_reason="", valid=True, reward=0.0, anchor="a", observation="go")
    path = write_jsonl([Trajectory(traj_id=0, group_id=0, seed=0, steps=[step])], tmp_path / "t.jsonl")
    assert "data:image/png;base64," in path.read_text()
    assert path.stat().st_size < frame.size * 3  # not a JSON list of numbers
    back = read_jsonl(path)[0].steps[0].messages[0]["content"]
    assert back[0]["image"].dtype == np.uint8 and np.array_equal(back[0]["image"], frame)
    assert back[1] == {"type": "text", "text": "go"}
