"""Tests of the Sokoban environment (envs/sokoban.py)."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.sokoban import SokobanEnv, solve

# Hand-made 6x6 levels for exact scenarios (symbols: see envs/sokoban.py).
ONE_PUSH = """\
######
#____#
#PXO_#
#____#
#____#
######"""

CORNERED = """\
######
#X___#
#____#
#__O_#
#___P#
######"""


def cell(anchor: str, row: int, col: int) -> str:
    return anchor.splitlines()[row][col]


def player_pos(anchor: str) -> tuple[int, int]:
    for r, line in enumerate(anchor.splitlines()):
        for c, ch in enumerate(line):
            if ch in "PS":
                return r, c
    raise AssertionError("no player in grid")


OFFSETS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


@pytest.mark.parametrize("obs_mode", ["text", "both"])
def test_check_env(obs_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium warns that a directly built env has no spec
        check_env(SokobanEnv(obs_mode=obs_mode))


def test_same_seed_same_room_and_seeds_vary():
    env = SokobanEnv()
    first, _ = env.reset(seed=7)
    again, _ = env.reset(seed=7)
    assert first == again
    anchors = {env.reset(seed=s)[0]["anchor"] for s in range(20)}
    assert len(anchors) > 10


def _spaced(grid: str) -> str:
    return "\n".join(" ".join(row) for row in grid.split("\n"))


def test_observation_text_and_anchor():
    env = SokobanEnv()
    obs, info = env.reset(seed=0)
    grid = obs["anchor"]
    assert _spaced(grid) in obs["text"] and "Legend" in obs["text"]
    assert "Step" not in grid and "Legend" not in grid
    rows = grid.splitlines()
    assert len(rows) == 6 and all(len(r) == 6 for r in rows)
    assert set(rows[0]) == {"#"} and set(rows[-1]) == {"#"}
    assert obs["images"] == ()
    assert info["admissible_actions"] == ["up", "down", "left", "right"]
    assert info["steps"] == 0 and info["won"] is False and info["boxes_on_target"] == 0
    assert isinstance(info["task"], str) and "\n" not in info["task"]
    assert SokobanEnv.instructions


def test_expert_solves_200_generated_rooms_within_max_steps():
    env = SokobanEnv()
    for seed in range(200):
        env.reset(seed=seed)
        for _ in range(env.max_steps):
            _, _, terminated, truncated, info = env.step(env.expert_action())
            if terminated or truncated:
                break
        assert info["won"] and terminated and not truncated, f"seed {seed}"


def test_multi_box_rooms_are_generated_and_solvable():
    env = SokobanEnv(dim_room=(7, 7), num_boxes=2, max_steps=30)
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        assert sum(obs["anchor"].count(ch) for ch in "X*") == 2
        plan = solve(obs["anchor"])
        assert plan and len(plan) <= env.max_steps


def test_invalid_action_changes_nothing_but_costs_a_step():
    env = SokobanEnv()
    obs, _ = env.reset(seed=3)
    for bad in ["jump", "", "up up", "<action>up</action>", None]:
        new, reward, terminated, truncated, info = env.step(bad)
        assert info["valid_action"] is False
        assert new["anchor"] == obs["anchor"]
        assert reward == pytest.approx(env.step_penalty)
        assert not terminated
    assert info["steps"] == 5


def test_actions_are_case_insensitive_and_stripped():
    env = SokobanEnv()
    env.reset(seed=0, options={"room": ONE_PUSH})
    _, _, _, _, info = env.step("  RIGHT \n")
    assert info["valid_action"] is True and info["won"] is True


def test_walking_into_a_wall_is_valid_and_keeps_the_state():
    env = SokobanEnv()
    for seed in range(50):
        obs, _ = env.reset(seed=seed)
        r, c = player_pos(obs["anchor"])
        into_wall = [a for a, (dr, dc) in OFFSETS.items() if cell(obs["anchor"], r + dr, c + dc) == "#"]
        if into_wall:
            break
    new, reward, _, _, info = env.step(into_wall[0])
    assert info["valid_action"] is True
    assert new["anchor"] == obs["anchor"]
    assert reward == pytest.approx(env.step_penalty)


def test_pushing_a_box_into_a_wall_is_valid_and_does_not_move():
    env = SokobanEnv()
    env.reset(options={"room": CORNERED})
    for action in ["up", "up", "left", "left", "left"]:  # walk to (2,1), just below the box
        obs, *_ = env.step(action)
    assert player_pos(obs["anchor"]) == (2, 1) and cell(obs["anchor"], 1, 1) == "X"
    new, _, _, _, info = env.step("up")  # the box would go into the top wall
    assert info["valid_action"] is True and new["anchor"] == obs["anchor"]


def test_step_limit_truncates_without_terminating():
    env = SokobanEnv(max_steps=5)
    env.reset(seed=1)
    for i in range(5):
        _, _, terminated, truncated, info = env.step("nope")
        assert terminated is False
        assert truncated is (i == 4)
    assert info["steps"] == 5 and info["won"] is False


def test_rewards_for_pushing_on_and_off_targets_and_solving():
    env = SokobanEnv()
    env.reset(seed=0, options={"room": ONE_PUSH})
    _, reward, terminated, _, info = env.step("right")
    assert reward == pytest.approx(-0.1 + 1.0 + 10.0)
    assert terminated and info["won"] and info["boxes_on_target"] == 1

    two = SokobanEnv(dim_room=(5, 7), num_boxes=2)
    room = "#######\n#PXO__#\n#_____#\n#XO___#\n#######"
    two.reset(options={"room": room})
    _, reward, terminated, _, info = two.step("right")  # first box onto its target
    assert reward == pytest.approx(-0.1 + 1.0) and not terminated and info["boxes_on_target"] == 1
    _, reward, terminated, _, info = two.step("right")  # and off it again
    assert reward == pytest.approx(-0.1 - 1.0) and info["boxes_on_target"] == 0


def test_custom_reward_settings():
    env = SokobanEnv(step_penalty=0.0, box_on_target=0.5, solve_bonus=1.0)
    env.reset(options={"room": ONE_PUSH})
    assert env.step("right")[1] == pytest.approx(1.5)


def test_expert_returns_a_legal_move_when_unsolvable():
    env = SokobanEnv()
    env.reset(options={"room": CORNERED})  # the box sits in a corner
    assert env.expert_action() in ("up", "down", "left", "right")


def test_expert_replans_after_a_detour():
    env = SokobanEnv(max_steps=40)
    for seed in range(20):
        env.reset(seed=seed)
        env.expert_action()  # caches the plan from the start
        for action in ["left", "up", "right"]:  # leave the plan
            obs, *_ = env.step(action)
        plan = solve(obs["anchor"])
        if not plan:  # the detour cornered the box (or solved the level); try another level
            continue
        for _ in plan:
            _, _, terminated, _, info = env.step(env.expert_action())
        assert terminated and info["won"], f"seed {seed}"


def test_solve():
    assert solve(ONE_PUSH) == ["right"]
    assert solve(ONE_PUSH.splitlines()) == ["right"]
    assert solve(CORNERED) is None
    assert solve("#####\n#P*_#\n#####") == []
    assert solve("######\n#P_XO#\n######") == ["right", "right"]
    with pytest.raises(ValueError, match="enclosed"):
        solve("#P_XO#")


def test_image_mode():
    env = SokobanEnv(obs_mode="image", image_size=16)
    obs, _ = env.reset(seed=0)
    (img,) = obs["images"]
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert obs["anchor"] not in obs["text"]  # the grid is only in the picture
    assert env.observation_space.contains(obs)
    obs2, _ = env.reset(seed=0)
    assert np.array_equal(obs2["images"][0], img)


def test_both_mode_has_grid_and_image():
    env = SokobanEnv(obs_mode="both", dim_room=(7, 7), image_size=8)
    obs, _ = env.reset(seed=0)
    assert _spaced(obs["anchor"]) in obs["text"]
    assert obs["images"][0].shape == (56, 56, 3)


def test_render_modes():
    env = SokobanEnv(render_mode="ansi")
    obs, _ = env.reset(seed=2)
    assert env.render() == obs["anchor"]
    env = SokobanEnv(render_mode="rgb_array")
    env.reset(seed=2)
    assert env.render().shape == (96, 96, 3)


def test_registry_and_gymnasium_make():
    env = envs.make("sokoban")
    assert isinstance(env, SokobanEnv)
    env = envs.make("sokoban", dim_room=(7, 7), num_boxes=2, max_steps=30)
    assert len(env.reset(seed=0)[0]["anchor"].splitlines()) == 7
    genv = gymnasium.make("groupwise/sokoban", obs_mode="both")
    obs, info = genv.reset(seed=0)
    assert obs["images"][0].shape == (96, 96, 3) and "won" in info


@pytest.mark.parametrize("kwargs, message", [
    ({"obs_mode": "pixels"}, "'text', 'image', 'both'"),
    ({"render_mode": "human"}, "render_mode"),
    ({"dim_room": (5, 5), "num_boxes": 4}, "too few"),
    ({"dim_room": (3, 8)}, "at least 4"),
    ({"num_boxes": 0}, "num_boxes"),
    ({"max_steps": 0}, "max_steps"),
    ({"dim_room": (6,)}, "rows, cols"),
    ({"dim_room": 6}, "rows, cols"),
    ({"image_size": 3}, "image_size"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SokobanEnv(**kwargs)


def test_loading_a_room_of_the_wrong_size_is_rejected():
    env = SokobanEnv(dim_room=(7, 7))
    with pytest.raises(ValueError, match="expects 7x7"):
        env.reset(options={"room": ONE_PUSH})


def test_step_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match="reset"):
        SokobanEnv().step("up")


def test_positions_text_spells_out_relative_positions():
    env = SokobanEnv(text_grid=False)
    obs, _ = env.reset(options={"room": ["######", "#P___#", "#____#", "#_X__#", "#___O#", "######"]})
    text = obs["text"]
    assert "Legend" not in text and "# #" not in text
    assert "Player at (1, 1). Boxes at (3, 2). Targets at (4, 4)." in text
    assert "Box at (3, 2): 2 down, 1 right of you." in text
    assert "Target at (4, 4): 1 down, 2 right of the box at (3, 2)." in text
    assert obs["anchor"] == "######\n#P___#\n#____#\n#_X__#\n#___O#\n######"
