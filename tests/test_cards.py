"""Tests of the gym-cards games (envs/cards/): EZPoints, Points24, NumberLine, Blackjack."""

from __future__ import annotations

import random
import warnings
from fractions import Fraction

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.base import ActionFormat
from envs.cards import (BlackjackEnv, EZPointsEnv, NumberLineEnv, Points24Env, basic_strategy, evaluate,
                        hand_total, solutions)

ENVS = (EZPointsEnv, Points24Env, NumberLineEnv, BlackjackEnv)


def play(env, actions):
    """Step through `actions`; returns the list of (obs, reward, terminated, truncated, info)."""
    return [env.step(a) for a in actions]


def run_expert(env, seed: int, via_format: bool = False) -> tuple[float, dict]:
    """One episode with the expert; `via_format` sends it through the action format as a model would."""
    fmt = ActionFormat()
    env.reset(seed=seed)
    total, done, info = 0.0, False, {}
    while not done:
        action = env.expert_action()
        if via_format:
            parsed = fmt.parse(fmt.format(action, think="expert"))
            assert parsed.well_formed
            action = parsed.action
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
    return total, info


# -- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ENVS)
@pytest.mark.parametrize("obs_mode", ["image", "text"])
def test_check_env(cls, obs_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium warns that a directly built env has no spec
        check_env(cls(obs_mode=obs_mode))


@pytest.mark.parametrize("cls", ENVS)
def test_same_seed_same_deal_and_seeds_vary(cls):
    a, b = cls(obs_mode="both"), cls(obs_mode="both")
    first, info_a = a.reset(seed=11)
    again, info_b = b.reset(seed=11)
    assert first["text"] == again["text"] and first["anchor"] == again["anchor"]
    assert np.array_equal(first["images"][0], again["images"][0])
    assert info_a == info_b
    # the same actions keep them in step, random draws included (blackjack hits)
    for action in ("hit", "+", "1", "-"):
        oa, ra, *_ = a.step(action)
        ob, rb, *_ = b.step(action)
        assert oa["anchor"] == ob["anchor"] and ra == rb
        if a._over:
            break
    anchors = {a.reset(seed=s)[0]["anchor"] for s in range(20)}
    assert len(anchors) >= 10


@pytest.mark.parametrize("cls", ENVS)
def test_observation_shapes_and_render(cls):
    env = cls(obs_mode="both", image_size=200, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    (img,) = obs["images"]
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    assert np.array_equal(env.render(), img)
    assert set(info) >= {"won", "valid_action", "admissible_actions", "task"}
    assert info["task"] in obs["text"] and "<action>" in obs["text"]
    assert cls(obs_mode="text").reset(seed=0)[0]["images"] == ()
    ansi = cls(render_mode="ansi")
    assert ansi.reset(seed=0)[0]["anchor"] == ansi.render()


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="obs_mode"):
        EZPointsEnv(obs_mode="video")
    with pytest.raises(ValueError, match="image_size"):
        BlackjackEnv(image_size=10)
    with pytest.raises(ValueError, match="target_points=101"):
        EZPointsEnv(target_points=101)
    with pytest.raises(ValueError, match="plays 4"):
        Points24Env().reset(options={"cards": ["3", "4"]})
    with pytest.raises(ValueError, match="bad card 'Z9'"):
        EZPointsEnv().reset(options={"cards": ["Z9", "3"]})
    with pytest.raises(RuntimeError, match="reset"):
        NumberLineEnv().step("+")
    env = NumberLineEnv()
    env.reset(options={"current": 1, "target": 2})
    env.step("+")
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("+")
    with pytest.raises(RuntimeError, match="no solvable hand"):
        Points24Env(target_points=10_000, max_deals=3).reset(seed=0)


# -- formulas -------------------------------------------------------------------------------------


def test_evaluate_is_exact_and_strict():
    assert evaluate(list("8/(3-8/3)")) == 24  # a float eval gives 23.99999...
    assert evaluate(["2", "+", "3", "*", "4"]) == 14
    assert evaluate(["(", "2", "+", "3", ")", "*", "4"]) == 20
    assert evaluate(["10", "-", "4", "-", "3"]) == 3
    assert evaluate(["1", "/", "3"]) == Fraction(1, 3)
    for bad in (["1", "2"], ["3", "+"], ["(", "3"], ["3", ")"], [], ["+", "3"], ["3", "/", "(", "2", "-", "2", ")"]):
        assert evaluate(bad) is None, bad


def test_solutions():
    assert solutions((3, 4), 12, "+*") == (("3", "*", "4"), ("4", "*", "3"))
    assert solutions((1, 1, 1, 1), 24) == ()
    best = solutions((3, 3, 8, 8), 24)
    assert best and all(evaluate(list(s)) == 24 for s in best)
    assert sorted(t for t in best[0] if t.isdigit()) == ["3", "3", "8", "8"]


# -- EZPoints -------------------------------------------------------------------------------------


def test_ezpoints_correct_formula_scores_10():
    env = EZPointsEnv(obs_mode="text")
    env.reset(options={"cards": ["3H", "9S"]})
    steps = play(env, ["9", "+", "3", "="])
    assert [s[1] for s in steps] == [0.0, 0.0, 0.0, 10.0]
    obs, _, terminated, truncated, info = steps[-1]
    assert terminated and not truncated and info["won"]
    assert obs["anchor"] == "cards=3H,9S|formula=9+3"


@pytest.mark.parametrize("tokens", [["3", "*", "9", "="], ["3", "="], ["="], ["3", "+", "="]])
def test_ezpoints_wrong_or_incomplete_formula_scores_minus_1(tokens):
    env = EZPointsEnv(obs_mode="text")
    env.reset(options={"cards": ["3H", "9S"]})
    *_, (obs, reward, terminated, _, info) = play(env, tokens)
    assert reward == -1.0 and terminated and not info["won"]


def test_ezpoints_illegal_token_costs_1_and_changes_nothing():
    env = EZPointsEnv(obs_mode="both")
    start, _ = env.reset(options={"cards": ["3H", "9S"]})
    for bad in ("5", "hello", "-", "11"):  # not on a card / not an action / not an EZPoints operator
        obs, reward, terminated, truncated, info = env.step(bad)
        assert reward == -1.0 and not info["valid_action"] and not terminated
        assert obs["anchor"] == start["anchor"]
        assert np.array_equal(obs["images"][0], start["images"][0])
    env.reset(options={"cards": ["3H", "9S"]})
    _, _, (obs, reward, _, _, info) = play(env, ["3", "+", "3"])  # the only 3 is used up
    assert reward == -1.0 and not info["valid_action"] and obs["anchor"].endswith("formula=3+")
    assert "3" not in info["legal_actions"] and "9" in info["legal_actions"]


def test_ezpoints_step_limit_truncates_with_minus_1():
    env = EZPointsEnv(obs_mode="text")
    env.reset(options={"cards": ["3H", "9S"]})
    steps = play(env, ["3", "+", "+", "+", "+"])
    assert [s[1] for s in steps] == [0.0, 0.0, 0.0, 0.0, -1.0]
    assert steps[-1][3] and not steps[-1][2]  # truncated, not terminated


def test_ezpoints_faces_count_10_and_deals_are_solvable():
    env = EZPointsEnv(obs_mode="text")
    _, info = env.reset(options={"cards": ["KH", "2S"]})
    assert env.values == (10, 2) and "10" in info["legal_actions"]
    assert play(env, ["10", "+", "2", "="])[-1][1] == 10.0
    for seed in range(150):
        env.reset(seed=seed)
        a, b = env.values
        assert a + b == 12 or a * b == 12, env.cards
        assert all(c.rank >= 2 for c in env.cards)


def test_ezpoints_expert_wins_every_seed_and_resumes_mid_formula():
    env = EZPointsEnv()
    for seed in range(40):
        total, info = run_expert(env, seed, via_format=seed % 2 == 0)
        assert info["won"] and total == 10.0
    env.reset(options={"cards": ["4D", "8C"]})
    env.step("8")
    assert env.expert_action() == "+"
    env.step("+")
    assert env.expert_action() == "4"


def test_image_mode_text_hides_the_cards_but_keeps_the_formula():
    img = EZPointsEnv(obs_mode="image")
    txt = EZPointsEnv(obs_mode="text")
    for env in (img, txt):
        env.reset(options={"cards": ["7H", "5S"]})
    (oi, _, _, _, ii), (ot, _, _, _, it) = img.step("7"), txt.step("7")
    assert "Current formula: 7." in oi["text"] and "Current formula: 7." in ot["text"]
    assert "5 of spades" in ot["text"] and "spades" not in oi["text"] and "Cards:" not in oi["text"]
    # listing only the legal numbers would give the cards away in image mode
    assert ii["admissible_actions"] == list(img.ACTIONS)
    assert it["admissible_actions"] == ["5", "+", "*", "="] == ii["legal_actions"]
    assert oi["anchor"] == ot["anchor"]


def test_images_follow_the_state():
    a, b = EZPointsEnv(), EZPointsEnv()
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    assert np.array_equal(oa["images"][0], ob["images"][0])
    token = a.expert_action()
    oa2 = a.step(token)[0]
    assert not np.array_equal(oa2["images"][0], oa["images"][0])  # the formula is drawn
    ob2 = b.step("hello")[0]  # illegal: nothing changes, so neither does the picture
    assert np.array_equal(ob2["images"][0], ob["images"][0])
    ob3 = b.step(token)[0]
    assert np.array_equal(ob3["images"][0], oa2["images"][0]) and ob3["anchor"] == oa2["anchor"]
    other = EZPointsEnv().reset(seed=6)[0]
    assert other["anchor"] != oa["anchor"] and not np.array_equal(other["images"][0], oa["images"][0])


# -- Points24 -------------------------------------------------------------------------------------


def test_points24_exact_division_and_parentheses_win():
    env = Points24Env(obs_mode="text")
    env.reset(options={"cards": ["8H", "3S", "8C", "3D"]})
    *_, (obs, reward, terminated, _, info) = play(env, list("8/(3-8/3)") + ["="])
    assert reward == 10.0 and terminated and info["won"]


def test_points24_rules():
    env = Points24Env(obs_mode="text")
    env.reset(options={"cards": ["QH", "AS", "2C", "KD"]})
    assert env.values == (10, 1, 2, 10)
    steps = play(env, ["(", "10", "+", "2", ")", "*", "1", "+", "10", "="])  # 22, not 24
    assert [s[1] for s in steps] == [0.0] * 9 + [-1.0]
    env.reset(options={"cards": ["QH", "AS", "2C", "KD"]})
    steps = play(env, ["10", "+", "10", "+", "10"])  # only two tens
    assert steps[-1][1] == -1.0 and not steps[-1][4]["valid_action"]
    env.reset(options={"cards": ["2H", "2S", "2C", "2D"]})
    steps = play(env, ["("] * 20)
    assert all(r == 0.0 for _, r, *_ in steps[:-1]) and steps[-1][1] == -1.0 and steps[-1][3]


def test_points24_face_values_option():
    env = Points24Env(faces_as_10=False, obs_mode="text")
    assert "13" in env.ACTIONS
    env.reset(options={"cards": ["KH", "QS", "AC", "AD"]})
    assert env.values == (13, 12, 1, 1)
    assert play(env, ["13", "+", "12", "-", "1", "*", "1", "="])[-1][1] == 10.0


def test_points24_deals_solvable_by_default_and_expert_wins():
    env = Points24Env()
    for seed in range(15):
        total, info = run_expert(env, seed, via_format=True)
        assert info["won"] and total == 10.0
    loose = Points24Env(solvable_only=False, obs_mode="text")
    unsolvable = 0
    for seed in range(60):
        loose.reset(seed=seed)
        unsolvable += not solutions(loose.values, 24)
    assert unsolvable > 0  # the suite's dealing: some hands have no solution
    # off the solver's path the expert gives up with "=" rather than loop
    env.reset(options={"cards": ["1", "1", "1", "1"]})
    assert env.expert_action() == "="


# -- NumberLine -----------------------------------------------------------------------------------


def test_numberline_rewards():
    env = NumberLineEnv(obs_mode="text")
    env.reset(options={"current": 2, "target": 4})
    steps = play(env, ["+", "-", "+", "+"])
    assert [s[1] for s in steps] == [0.0, -1.0, 0.0, 1.0]
    assert steps[-1][2] and steps[-1][4]["won"] and steps[-1][0]["anchor"] == "current=4|target=4"
    env.reset(options={"current": 0, "target": 3})
    obs, reward, *_ , info = env.step("-")  # the left end: no move, no progress
    assert reward == -1.0 and info["valid_action"] and obs["anchor"] == "current=0|target=3"
    obs, reward, *_, info = env.step("left")
    assert reward == -1.0 and not info["valid_action"] and obs["anchor"] == "current=0|target=3"


def test_numberline_truncates_after_twice_max_position():
    env = NumberLineEnv(max_position=3, obs_mode="text")
    env.reset(options={"current": 0, "target": 3})
    steps = play(env, ["-"] * 6)
    assert [s[3] for s in steps] == [False] * 5 + [True]


def test_numberline_expert_wins_and_starts_differ():
    env = NumberLineEnv()
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        assert env.current != env.target
        total, info = run_expert(env, seed)
        assert info["won"] and total == 1.0


def test_numberline_reports_the_side_of_the_target_for_the_whole_episode():
    env = NumberLineEnv(max_position=5, obs_mode="text")
    _, info = env.reset(options={"current": 2, "target": 0})
    assert info["task_type"] == "target below"
    # overshooting past the target does not change the episode's kind
    assert [s[4]["task_type"] for s in play(env, ["+", "+", "+"])] == ["target below"] * 3
    _, info = env.reset(options={"current": 1, "target": 4})
    assert info["task_type"] == "target above" and env.step("+")[4]["task_type"] == "target above"


def test_numberline_image_tracks_state():
    env = NumberLineEnv(max_position=8)
    start, _ = env.reset(options={"current": 4, "target": 1})
    moved = env.step("+")[0]
    back = env.step("-")[0]
    assert not np.array_equal(moved["images"][0], start["images"][0])
    assert np.array_equal(back["images"][0], start["images"][0]) and back["anchor"] == start["anchor"]
    assert "Current: 4" in env._state_text() and "Current" not in back["text"]  # image mode hides it


# -- Blackjack ------------------------------------------------------------------------------------


@pytest.mark.parametrize("player, dealer, reward", [
    (["10H", "9S"], ["10C", "8D"], 1.0),    # 19 beats 18 (the dealer stands on 17+)
    (["10H", "8S"], ["KC", "8D"], 0.0),     # 18 all
    (["10H", "7S"], ["KC", "9D"], -1.0),    # 17 loses to 19
    (["AH", "KS"], ["9C", "8D"], 1.0),      # a natural is a plain win by default
])
def test_blackjack_stand_scores(player, dealer, reward):
    env = BlackjackEnv(obs_mode="text")
    env.reset(seed=0, options={"player": player, "dealer": dealer})
    obs, r, terminated, _, info = env.step("stand")
    assert r == reward and terminated and info["won"] == (reward > 0)
    assert "|outcome=" in obs["anchor"]


def test_blackjack_natural_bonus_and_hit_busts():
    env = BlackjackEnv(natural=True, obs_mode="text")
    env.reset(seed=0, options={"player": ["AH", "KS"], "dealer": ["9C", "8D"]})
    assert env.step("STAND")[1] == 1.5
    outcomes = set()
    for seed in range(30):
        env.reset(seed=seed, options={"player": ["10H", "9S"], "dealer": ["9C", "8D"]})
        obs, reward, terminated, _, _ = env.step("hit")
        busted = env.player_total > 21
        assert (reward, terminated) == ((-1.0, True) if busted else (0.0, False))
        outcomes.add(busted)
    assert outcomes == {True, False}


def test_blackjack_invalid_action_and_hidden_card():
    a, b = BlackjackEnv(), BlackjackEnv()
    oa, _ = a.reset(seed=1, options={"player": ["5H", "6S"], "dealer": ["9C", "2D"]})
    ob, _ = b.reset(seed=1, options={"player": ["5H", "6S"], "dealer": ["9C", "KD"]})
    # the hole card is neither drawn nor keyed: the player cannot tell these states apart
    assert oa["anchor"] == ob["anchor"] == "player=5H,6S|dealer=9C,?"
    assert np.array_equal(oa["images"][0], ob["images"][0])
    obs, reward, terminated, _, info = a.step("double down")
    assert reward == -1.0 and not terminated and not info["valid_action"] and obs["anchor"] == oa["anchor"]
    hit = a.step("hit")[0]
    assert not np.array_equal(hit["images"][0], oa["images"][0])
    assert hand_total([1, 6]) == (17, True) and hand_total([1, 6, 10]) == (17, False)
    assert basic_strategy([10, 6], 10) == "hit" and basic_strategy([10, 6], 5) == "stand"


def test_blackjack_expert_beats_random():
    env = BlackjackEnv(obs_mode="text")
    expert = sum(run_expert(env, seed)[0] for seed in range(300)) / 300
    rng = random.Random(0)
    total = 0.0
    for seed in range(300):
        env.reset(seed=seed)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(rng.choice(["stand", "hit"]))
            done = terminated or truncated
        total += reward
    assert expert > total / 300 + 0.15
