"""`envs.check_env`: every built-in env keeps the groupwise env contract, and an env that breaks a
rule is told which rule and how to fix it.

The broken envs (tests/faulty_envs.py) are CounterEnvs with one thing wrong each; there is one for
every rule in `envs.check.RULES`.
"""

from __future__ import annotations

import shutil
import time

import gymnasium as gym
import pytest

import envs
from envs.check import RULES
from tests import faulty_envs as faulty

# jericho warns that it does not know TextWorld's games; TextWorld supplies what it lacks
pytestmark = pytest.mark.filterwarnings("ignore::Warning:jericho")

HAS_CHROMIUM = bool(shutil.which("chromium"))
# Every MiniWoB task (and `miniwob-suite`) is the same env class on a different page, and one costs
# ~15 s here (each of the checker's resets loads a page in Chromium): one task stands for the family.
MINIWOB_SAMPLE = ("miniwob.click-button",)
# The envs this package registers (not ones another test module or a plugin added meanwhile).
BUILTIN = [i for i in envs.list_envs()
           if isinstance(envs.spec(i).entry_point, str) and envs.spec(i).entry_point.startswith("envs.")]
ENV_IDS = [i for i in BUILTIN if not i.startswith("miniwob") or i in MINIWOB_SAMPLE]
#: Small options for envs whose defaults build a lot (the contract does not depend on them).
OPTIONS = {"webshop": {"num_products": 100, "num_goals": 60, "eval_goals": 10},
           "textworld": {"settings": {"level": 1}}}
#: Shorter episodes where every step costs a browser round trip.
STEPS = {i: 3 for i in MINIWOB_SAMPLE}

#: One env per rule that breaks that rule and no earlier one.
BROKEN = {
    "api": faulty.StepReturnsFourEnv,
    "observation": faulty.ImagesAsFloatsEnv,
    "anchor": faulty.IntAnchorEnv,
    "info": faulty.NoWonEnv,
    "reward": faulty.NanRewardEnv,
    "picklable": faulty.LambdaInInfoEnv,
    "expert": faulty.WrongExpertEnv,
    "replay": faulty.UnseededStepEnv,
    "malformed-action": faulty.StrictParseEnv,
    "action-format": faulty.MismatchedFormatEnv,
    "gymnasium": faulty.NoOptionsEnv,
}
#: More ways to break a rule, each caught by name.
ALSO_BROKEN = [
    ("info", faulty.NumpyBoolValidEnv, r"info\[.valid_action.\] = .* of type numpy.bool, not bool"),
    ("replay", faulty.LeaksAcrossEpisodesEnv, "reset\\(seed=0\\) twice gave different results"),
    ("malformed-action", faulty.EmptyIsValidEnv, "the empty action gave valid_action=True"),
    ("api", lambda: faulty.FaultyEnv(mode="raise", bad_seed=0), "RuntimeError: injected fault"),
    ("picklable", lambda: faulty.FaultyEnv(mode="unloadable", bad_seed=0), "this object cannot be rebuilt"),
]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_builtin_env_keeps_the_contract(env_id):
    if env_id.startswith("miniwob.") and not HAS_CHROMIUM:
        pytest.skip("needs Debian's Chromium (apt-get install chromium)")
    env = envs.make(env_id, **OPTIONS.get(env_id, {}))
    try:
        assert envs.check_env(env, steps=STEPS.get(env_id, 10)) is None
    finally:
        env.close()


def test_a_gymnasium_made_env_is_checked_with_its_render_modes():
    env = gym.make("groupwise/sokoban")
    assert env.unwrapped.metadata["render_modes"]  # so Gymnasium builds and renders each mode
    try:
        envs.check_env(env, seed=3, steps=4)
    finally:
        env.close()


def test_the_counter_env_the_broken_ones_derive_from_keeps_the_contract():
    envs.check_env(faulty.CounterEnv())


def test_there_is_a_broken_env_for_every_rule():
    assert list(BROKEN) == list(RULES)


@pytest.mark.parametrize("rule", list(BROKEN))
def test_a_broken_rule_is_named_with_its_fix(rule):
    env = BROKEN[rule]()
    with pytest.raises(envs.EnvContractError) as caught:
        envs.check_env(env)
    error = caught.value
    assert error.rule == rule, str(error)
    message = str(error)
    assert f"rule '{rule}'" in message and type(env).__name__ in message and "\nFix: " in message
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("rule, make, says", ALSO_BROKEN, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(ALSO_BROKEN)])
def test_other_ways_to_break_a_rule(rule, make, says):
    with pytest.raises(envs.EnvContractError, match=says) as caught:
        envs.check_env(make())
    assert caught.value.rule == rule


def test_the_error_says_where_and_what():
    with pytest.raises(envs.EnvContractError) as caught:
        envs.check_env(faulty.NoWonEnv())
    message = str(caught.value)
    assert "step 1 of the seed-0 episode" in message and "without 'won'" in message and "make_info" in message
    with pytest.raises(envs.EnvContractError) as caught:
        envs.check_env(faulty.StrictParseEnv())
    assert "step('')" in str(caught.value) and "ValueError" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)  # the env's own traceback is kept


def test_not_a_gymnasium_env_and_bad_arguments():
    with pytest.raises(envs.EnvContractError, match="is not a gymnasium.Env") as caught:
        envs.check_env(object())
    assert caught.value.rule == "api"
    with pytest.raises(ValueError, match="steps must be at least 1"):
        envs.check_env(faulty.CounterEnv(), steps=0)


class _NoExpert(faulty.CounterEnv):
    expert_action = envs.AgentEnv.expert_action  # the base's: "no expert"


def test_an_env_without_an_expert_is_played_from_its_admissible_actions():
    class Admissible(_NoExpert):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, reward, terminated, truncated, {**info, "admissible_actions": ["1", "2", "3"]}

    start = time.monotonic()
    envs.check_env(Admissible(max_steps=20), steps=15)
    assert time.monotonic() - start < 10


def test_only_actions_the_env_accepted_must_survive_its_format():
    """Without expert or admissible actions the episode plays random words, which the env refuses;
    a format that canonicalises them (SearchFormat wraps a bare answer in <answer>) is not at fault."""
    from envs.search.env import SearchFormat

    class Canonical(_NoExpert):
        action_format = SearchFormat()

    envs.check_env(Canonical())
