"""ALFWorld on the real engine: generated games for every task type, the ALFWorld data layout,
splits, the expert, bad input, and the env in the worker pool."""

import json
import re

import pytest

pytest.importorskip("alfworld")

import alfworld.gen.goal_library as goal_library
from gymnasium.utils.env_checker import check_env

import envs
from algos.cli import main as cli_main
from agents.records import StepRecord, Trajectory
from agents.rollout import success_by_task_type
from envs.alfworld import generator
from envs.alfworld.engine import game_data
from expert_play import play_expert


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("alfworld-cache"))


def sentence_pattern(task_type):
    """ALFWorld's templated task sentences for a task type, as one regex."""
    alternatives = []
    for template in goal_library.gdict[task_type]["templates"]:
        parts = re.split(r"\{\w+\}", template)
        alternatives.append("[a-z]+".join(re.escape(p) for p in parts))
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def test_check_env(cache):
    check_env(envs.make("alfworld", cache_dir=cache), skip_render_check=True)


@pytest.mark.parametrize("task_type", generator.TASK_TYPES)
def test_expert_wins_generated_games_of_each_task_type(task_type, cache):
    env = envs.make("alfworld", task_types=[task_type], cache_dir=cache)
    for seed in range(2):
        first, commands, reward, info = play_expert(env, seed)
        assert first["text"].startswith("-= Welcome to TextWorld, ALFRED! =-")
        assert info["won"] and reward == 10.0 and info["task_type"] == task_type
        assert sentence_pattern(task_type).fullmatch(info["task"]), info["task"]
        assert f"Your task is to: {info['task']}." in first["text"]
        assert commands[0] == "look"  # ALFWorld's expert always looks first


def test_generation_is_deterministic_and_cached(tmp_path, monkeypatch):
    a = envs.make("alfworld", cache_dir=str(tmp_path / "a"))
    b = envs.make("alfworld", cache_dir=str(tmp_path / "b"))
    first_a, commands_a, _, _ = play_expert(a, 7)
    first_b, commands_b, _, _ = play_expert(b, 7)
    assert first_a == first_b and commands_a == commands_b
    assert play_expert(a, 8)[0]["text"] != first_a["text"]

    # a second env on the same cache reads the verified game instead of generating it again
    monkeypatch.setattr(generator, "sample_game", lambda *a, **k: pytest.fail("regenerated a cached game"))
    c = envs.make("alfworld", cache_dir=str(tmp_path / "a"))
    assert play_expert(c, 7)[:2] == (first_a, commands_a)


def test_out_of_distribution_split_never_reuses_training_pairings_or_layouts():
    def drawn(split):
        games = [generator.sample_game(split, seed) for seed in range(300)]
        pairs = {(g.pddl_params["object_target"], g.pddl_params["parent_target"]) for g in games if g}
        layouts = {(g.room, g.layout) for g in games if g}
        return pairs, layouts, {g.task_type for g in games if g}

    train_pairs, train_layouts, train_types = drawn("train")
    out_pairs, out_layouts, out_types = drawn("eval_out")
    in_pairs, in_layouts, _ = drawn("eval_in")
    assert not train_pairs & out_pairs and not train_layouts & out_layouts
    assert in_pairs <= train_pairs | in_pairs and in_pairs & train_pairs  # same distribution as training
    assert train_types == out_types == set(generator.TASK_TYPES)
    assert generator.sample_game("train", 3) != generator.sample_game("eval_in", 3)


def test_inadmissible_command_is_feedback_not_an_error(cache):
    env = envs.make("alfworld", cache_dir=cache)
    first, info = env.reset(seed=0)
    before = info["admissible_actions"]
    obs, reward, terminated, truncated, info = env.step("fly to the moon")
    assert not info["valid_action"] and reward == 0.0 and not terminated
    assert obs["anchor"] == first["anchor"]  # the state did not change
    assert obs["text"].startswith("Nothing happens.") and "fly to the moon" in obs["text"]
    assert "not an admissible command" in obs["text"]
    assert info["admissible_actions"] == before and info["steps"] == 1
    # commands are matched like ALFWorld's (case and spacing do not matter)
    obs, _, _, _, info = env.step("  Go to  " + before[0][len("go to "):].upper())
    assert info["valid_action"] and obs["anchor"].startswith("You arrive at")


def test_step_limit_truncates(cache):
    env = envs.make("alfworld", cache_dir=cache, max_steps=3, expert_max_steps=50)
    env.reset(seed=0)
    results = [env.step("look") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)


def test_bad_input_gets_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown ALFWorld task type 'pick_and_eat'.*1=pick_and_place_simple"):
        envs.make("alfworld", task_types=["pick_and_eat"])
    with pytest.raises(ValueError, match="unknown split 'test'"):
        envs.make("alfworld", split="test")
    with pytest.raises(FileNotFoundError, match=r"does not exist.*json_2\.1\.1"):
        envs.make("alfworld", source="alfworld-data", data_dir=str(tmp_path / "nowhere"))
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="ALFWORLD_DATA"):
        envs.make("alfworld", source="alfworld-data")


def write_alfworld_data(root, split, task_type, seed):
    """One game in the layout of the ALFWorld download: json_2.1.1/<split>/<task>-.../trial_*/."""
    game = generator.sample_game("train", seed, (task_type,))
    p = game.pddl_params
    trial = root / "json_2.1.1" / split / f"{task_type}-{p['object_target']}-None-{p['parent_target'] or 'None'}-{seed}" / "trial_T0"
    trial.mkdir(parents=True)
    (trial / "game.tw-pddl").write_text(json.dumps(game_data(game.problem, game.sentence)))
    (trial / "traj_data.json").write_text(json.dumps(game.traj_data()))
    return game


def test_alfworld_data_layout_is_played_through_the_same_env_id(tmp_path):
    games = [write_alfworld_data(tmp_path, "valid_seen", "pick_and_place_simple", s) for s in (1, 2)]
    write_alfworld_data(tmp_path, "valid_seen", "pick_cool_then_place_in_recep", 3)
    # ALFWorld leaves out movable-receptacle variants; so does the env
    (tmp_path / "json_2.1.1" / "valid_seen" / "pick_and_place_with_movable_recep-Apple-Bowl-Fridge-1" / "trial_T0").mkdir(parents=True)

    env = envs.make("alfworld", source="alfworld-data", split="valid_seen", data_dir=str(tmp_path),
                    task_types=[1])
    sentences = set()
    for seed in (0, 1):
        first, commands, reward, info = play_expert(env, seed)
        assert info["won"] and info["task_type"] == "pick_and_place_simple"
        sentences.add(info["task"])
    assert sentences == {g.sentence for g in games}
    # the ALFWORLD_DATA variable works too, and the split name generated games use maps to valid_seen
    env = envs.make("alfworld", source="alfworld-data", split="eval_in", data_dir=str(tmp_path / "json_2.1.1"),
                    task_types=["pick_cool_then_place_in_recep"])
    assert play_expert(env, 0)[3]["won"]


def test_expert_rollout_cli_reports_success_per_task_type(cache, monkeypatch, capsys):
    monkeypatch.setenv("GROUPWISE_CACHE", cache)
    assert cli_main(["rollout", "--env", "alfworld", "--policy", "expert", "--episodes", "4", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert metrics["success"] == 1.0 and metrics["failed_episodes"] == 0
    per_type = {k: v for k, v in metrics.items() if k.startswith("success/")}
    assert per_type and all(v == 1.0 for v in per_type.values())
    assert set(per_type) <= {f"success/{t}" for t in generator.TASK_TYPES}


def test_success_by_task_type_groups_trajectories():
    def traj(task_type, won):
        step = StepRecord(0, 0, 0, [], [], [], [], "", "look", True, "", True, 0.0, "", "", info={"task_type": task_type})
        return Trajectory(0, 0, 0, steps=[step], won=won)

    trajs = [traj("a", True), traj("a", False), traj("b", True), Trajectory(0, 0, 0)]
    assert success_by_task_type(trajs) == {"success/a": 0.5, "success/b": 1.0}
    assert success_by_task_type(trajs, counts=True) == {"success/a": 0.5, "success/b": 1.0,
                                                        "episodes/a": 2.0, "episodes/b": 1.0}


def test_engines_in_one_process_do_not_share_state(cache):
    """EnvPool may keep several envs in one worker: interleaving two games must not mix them."""
    a, b = (envs.make("alfworld", cache_dir=cache) for _ in range(2))
    alone = [play_expert(envs.make("alfworld", cache_dir=cache), seed)[1] for seed in (0, 1)]
    a.reset(seed=0)
    b.reset(seed=1)
    played = {0: [], 1: []}
    done, won = {0: False, 1: False}, {}
    while not all(done.values()):
        for seed, env in ((0, a), (1, b)):
            if not done[seed]:
                played[seed].append(env.expert_action())
                _, _, terminated, truncated, info = env.step(played[seed][-1])
                done[seed], won[seed] = terminated or truncated, info["won"]
    assert [played[0], played[1]] == alone and won == {0: True, 1: True}
