"""`check_env`: does an environment keep the groupwise env contract?

The groupwise counterpart of `gymnasium.utils.env_checker.check_env`, for people who register their
own environment:

    import envs
    envs.check_env(envs.make("my-env"))        # or envs.check_env(gymnasium.make("groupwise/my-env"))

It plays a short episode (with the env's `expert_action()` when it has one), replays it, sends
malformed actions, runs Gymnasium's checker, and raises `EnvContractError` at the first rule broken,
naming the rule (`error.rule`, one of `RULES`) and how to fix it. It returns None when every rule holds.
The env is reset several times and left open.
"""

from __future__ import annotations

import copy
import math
import numbers
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.utils.passive_env_checker import env_render_passive_checker

from envs.base import ActionFormat, AgentEnv, anchor_thumbnail, is_image_anchor

__all__ = ["EnvContractError", "RULES", "check_env"]

#: The rules `check_env` checks, by the name `EnvContractError.rule` carries.
RULES: dict[str, str] = {
    "api": "reset() returns (obs, info); step(action) returns (obs, reward, terminated, truncated, info) "
           "with bool terminated/truncated, and neither raises on a well-formed action",
    "observation": "obs is a dict with 'text' (str), 'images' (a tuple or list of (H, W, 3) uint8 arrays) and 'anchor'",
    "anchor": "obs['anchor'] is a non-empty str, the key step-level estimators (GiGPO, HGPO) group by; "
              "an image anchor is the string envs.image_anchor makes",
    "info": "info (after reset and after every step) is a dict with 'won' and 'valid_action' as bool; "
            "'task' is a str and 'admissible_actions' a list of str where given",
    "reward": "reward is a finite float",
    "picklable": "obs and info pickle and unpickle (EnvPool sends them between processes)",
    "expert": "expert_action(), where the env offers one, returns a str that the env takes as a valid action",
    "replay": "the same seed and the same actions give the same observations, rewards, ends and infos, "
              "even after another episode (EnvPool rebuilds a crashed worker's envs by replay)",
    "malformed-action": "any text is an action: junk never raises, the observation stays in observation_space, "
                        "and the empty action (what the rollout sends for text it could not parse) "
                        "gives valid_action=False",
    "action-format": "the env class's action_format parses what its format() writes back to the same action, "
                     "and parses malformed text as not well formed without raising",
    "gymnasium": "gymnasium.utils.env_checker.check_env passes",
}

#: Actions no env can act on. "" is what the rollout sends when the agent's text did not parse.
MALFORMED_ACTIONS: tuple[str, ...] = ("", "\x00", "\udcff", "\x1b[2J", "<action>", "x" * 1_000_000)


class EnvContractError(ValueError):
    """An environment breaks a rule of the groupwise env contract; `rule` names it (a key of `RULES`)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def check_env(env: gym.Env, *, seed: int = 0, steps: int = 10) -> None:
    """Check that `env` keeps the groupwise env contract (see `RULES`); raise `EnvContractError` if not.

    `env` is an env from `envs.make(id)` or `gymnasium.make("groupwise/<id>")` (the latter also lets
    Gymnasium's checker build the env once per advertised render mode). `seed` is the episode played
    and replayed; `steps` caps its length (it ends earlier when the env ends it).
    """
    if not isinstance(env, gym.Env):
        raise _broken(env, "api", f"{type(env).__name__} is not a gymnasium.Env",
                      "subclass envs.AgentEnv (a gymnasium.Env) and implement reset and step")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    accepted = _check_replay(env, seed, steps)  # also checks every transition it sees
    _check_malformed_actions(env, seed)
    _check_action_format(env, accepted)
    _check_gymnasium(env)


# ------------------------------------------------------------------------------------ errors


def _name(env: Any) -> str:
    return type(getattr(env, "unwrapped", env)).__name__


def _broken(env: Any, rule: str, problem: str, fix: str) -> EnvContractError:
    return EnvContractError(rule, f"{_name(env)} breaks the groupwise env rule '{rule}' ({RULES[rule]}): "
                                  f"{problem.rstrip('.')}.\nFix: {fix}.")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _type(value: Any) -> str:
    """The type's name, qualified unless builtin: numpy's bool is also called 'bool'."""
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _raised(exc: BaseException) -> str:
    return f"raised {type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------- per-transition rules


def _check_observation(env: gym.Env, obs: Any, where: str) -> None:
    fix = "build it with self.make_obs(text, anchor=..., images=...) and declare envs.observation_space()"
    if not isinstance(obs, dict):
        raise _broken(env, "observation", f"{where} gave an observation of type {_type(obs)}", fix)
    missing = [k for k in ("text", "images", "anchor") if k not in obs]
    if missing:
        raise _broken(env, "observation", f"{where} gave an observation without {missing}", fix)
    if not isinstance(obs["text"], str):
        raise _broken(env, "observation", f"{where} gave obs['text'] of type {_type(obs['text'])}", fix)
    images = obs["images"]
    if not isinstance(images, (tuple, list)):
        raise _broken(env, "observation", f"{where} gave obs['images'] of type {_type(images)}",
                      "give a tuple of images, () when the env shows none")
    for i, image in enumerate(images):
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            got = f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray) else _type(image)
            raise _broken(env, "observation", f"{where} gave obs['images'][{i}] with {got}",
                          "give RGB images as (H, W, 3) uint8 numpy arrays, e.g. np.asarray(pil_image.convert('RGB'))")


def _check_anchor(env: gym.Env, obs: dict, where: str) -> None:
    anchor = obs["anchor"]
    if not isinstance(anchor, str):
        raise _broken(env, "anchor", f"{where} gave an anchor of type {_type(anchor)}: {_short(anchor)}",
                      "make the anchor a str that names the state (no history), e.g. the rendered board; "
                      "for image states use envs.image_anchor(pixels)")
    if not anchor:
        raise _broken(env, "anchor", f"{where} gave an empty anchor, which groups every such state together",
                      "make the anchor a str that names the state (make_obs uses the text when no anchor is given)")
    # a composite anchor ("img:...|question") is a text anchor by design; only a bare image anchor
    # carries a thumbnail, and a damaged one would silently drop out of similarity grouping
    if is_image_anchor(anchor) and ":t" in anchor and anchor_thumbnail(anchor) is None:
        raise _broken(env, "anchor", f"{where} gave an image anchor whose thumbnail does not match its size",
                      "make image anchors with envs.image_anchor(pixels) and do not edit them")


def _check_info(env: gym.Env, info: Any, where: str) -> None:
    fix = "build info with self.make_info(won=..., valid_action=..., **extra), which stores both as bool"
    if not isinstance(info, dict):
        raise _broken(env, "info", f"{where} gave info of type {_type(info)}", fix)
    for key in ("won", "valid_action"):
        if key not in info:
            raise _broken(env, "info", f"{where} gave info without {key!r} (it has {sorted(info)})", fix)
        if not isinstance(info[key], bool):  # np.bool_ is not a bool: it breaks JSON logs downstream
            raise _broken(env, "info", f"{where} gave info[{key!r}] = {_short(info[key])} of type "
                          f"{_type(info[key])}, not bool", fix)
    if "task" in info and not isinstance(info["task"], str):
        raise _broken(env, "info", f"{where} gave info['task'] of type {_type(info['task'])}",
                      "give the task as the text the agent is asked to do")
    admissible = info.get("admissible_actions")
    if admissible is not None and not (isinstance(admissible, (list, tuple))
                                       and all(isinstance(a, str) for a in admissible)):
        raise _broken(env, "info", f"{where} gave info['admissible_actions'] = {_short(admissible)}",
                      "give the admissible actions as a list of str (or leave the key out)")


def _check_reward(env: gym.Env, reward: Any, where: str) -> None:
    fix = "return the reward as a finite float, e.g. float(won)"
    # bool passes as a number but is almost always a forgotten float(); a str would pass float() in the pool
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
        raise _broken(env, "reward", f"{where} gave reward {_short(reward)} of type {_type(reward)}", fix)
    if not math.isfinite(reward):
        raise _broken(env, "reward", f"{where} gave reward {reward}", fix)


def _check_picklable(env: gym.Env, obs: Any, info: Any, where: str) -> None:
    try:
        pickle.loads(pickle.dumps((obs, info)))
    except Exception as exc:
        raise _broken(env, "picklable", f"{where} gave an obs or info that does not round-trip through pickle "
                      f"({_raised(exc)})", "keep obs and info to plain data (str, numbers, lists, dicts, numpy "
                      "arrays); no lambdas, open files, locks or objects of classes defined in a function") from exc


def _check_transition(env: gym.Env, obs: Any, reward: Any, info: Any, where: str) -> None:
    _check_observation(env, obs, where)
    _check_anchor(env, obs, where)
    _check_info(env, info, where)
    if reward is not None:
        _check_reward(env, reward, where)
    _check_picklable(env, obs, info, where)


def _reset(env: gym.Env, seed: int) -> tuple[dict, dict]:
    where = f"reset(seed={seed})"
    try:
        result = env.reset(seed=seed)
    except Exception as exc:
        raise _broken(env, "api", f"{where} {_raised(exc)}", "make reset(seed=None, options=None) return "
                      "(obs, info) for any seed") from exc
    if not (isinstance(result, tuple) and len(result) == 2):
        raise _broken(env, "api", f"{where} returned {_short(result)}",
                      "return (self.make_obs(...), self.make_info(...)) from reset")
    _check_transition(env, result[0], None, result[1], where)
    return result


def _step(env: gym.Env, action: str, where: str, rule: str = "api") -> tuple:
    """env.step(action), checked; an exception is blamed on `rule` (a malformed action's, or the API's)."""
    try:
        result = env.step(action)
    except Exception as exc:
        fix = ("answer text the env cannot act on with an observation and make_info(valid_action=False), "
               "never an exception" if rule == "malformed-action" else
               "step must handle every action the env offers (its expert's, its admissible_actions)")
        raise _broken(env, rule, f"{where}: step({_short(action)}) {_raised(exc)}", fix) from exc
    if not (isinstance(result, tuple) and len(result) == 5):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else _short(result)
        raise _broken(env, "api", f"{where}: step returned {got}, not (obs, reward, terminated, truncated, info)",
                      "return those five from step (Gymnasium's API: the old gym's `done` is split into "
                      "terminated, the task ended, and truncated, it was cut short)")
    obs, reward, terminated, truncated, info = result
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if not isinstance(flag, (bool, np.bool_)):
            raise _broken(env, "api", f"{where}: step returned {name} = {_short(flag)}", f"return {name} as a bool")
    _check_transition(env, obs, reward, info, where)
    return result


# -------------------------------------------------------------------------------- expert


def _has_expert(env: gym.Env) -> bool:
    method = getattr(type(env.unwrapped), "expert_action", None)
    return method is not None and method is not AgentEnv.expert_action


def _expert_action(env: gym.Env, where: str) -> str | None:
    """The expert's action, checked; None when the env has no expert (here)."""
    try:
        action = env.unwrapped.expert_action()
    except NotImplementedError:  # the documented way to say "no expert for this task"
        return None
    except Exception as exc:
        raise _broken(env, "expert", f"{where}: expert_action() {_raised(exc)}", "make expert_action() return "
                      "an action for every state of a running episode, or raise NotImplementedError") from exc
    if not isinstance(action, str):
        raise _broken(env, "expert", f"{where}: expert_action() returned {_short(action)}",
                      "return the action as a str, as the agent would write it inside the action format")
    return action


def _check_expert_step(env: gym.Env, action: str, info: dict, where: str) -> None:
    if not info["valid_action"]:
        raise _broken(env, "expert", f"{where}: the env called the expert's action {_short(action)} invalid",
                      "make expert_action() return an action step accepts (SFT warm starts learn from it)")


# -------------------------------------------------------------------------------- replay


@dataclass
class _Episode:
    reset: tuple
    actions: list[str] = field(default_factory=list)
    results: list[tuple] = field(default_factory=list)


def _play(env: gym.Env, seed: int, steps: int, choose: Callable[[int, dict], tuple[str, bool] | None]) -> _Episode:
    """Reset with `seed`, then step the actions `choose(step, info)` gives as (action, from the
    expert), until the episode ends, after `steps` steps, or when `choose` gives None."""
    episode = _Episode(copy.deepcopy(_reset(env, seed)))
    info = episode.reset[1]
    for t in range(steps):
        chosen = choose(t, info)
        if chosen is None:
            break
        action, from_expert = chosen
        where = f"step {t + 1} of the seed-{seed} episode"
        result = _step(env, action, f"{where} (action {_short(action, 40)})")
        if from_expert:
            _check_expert_step(env, action, result[4], where)
        episode.actions.append(action)
        episode.results.append(copy.deepcopy(result))  # the env may reuse what it returned
        info = result[4]
        if result[2] or result[3]:
            break
    return episode


def _chooser(env: gym.Env, seed: int) -> Callable[[int, dict], tuple[str, bool]]:
    """Actions for the checked episode: the expert's when the env has one, else one of the
    admissible actions, else a random word (an invalid action still exercises replay)."""
    rng = np.random.default_rng(seed)

    def choose(step: int, info: dict) -> tuple[str, bool]:
        action = _expert_action(env, f"step {step + 1} of the seed-{seed} episode") if _has_expert(env) else None
        if action is not None:
            return action, True
        admissible = info.get("admissible_actions")
        if admissible:
            return str(admissible[int(rng.integers(len(admissible)))]), False
        return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(1, 8)))), False

    return choose


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    """Where two results differ, as 'path: a vs b', or None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{path}[{key!r}] is in only one of the two runs"
            found = _first_difference(a[key], b[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path} has {len(a)} items in the first run, {len(b)} in the replay"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None  # e.g. an info score that is NaN on purpose, both times
    try:
        equal = bool(data_equivalence(a, b))
    except Exception:  # e.g. objects whose == is not a bool
        equal = a is b
    return None if equal else f"{path}: {_short(a)} vs {_short(b)}"


def _check_replay(env: gym.Env, seed: int, steps: int) -> list[str]:
    """Play `steps` steps from `seed`, play another episode, replay the first; return the actions
    the env accepted as valid in it."""
    first = _play(env, seed, steps, _chooser(env, seed))
    _play(env, seed + 1, 1, _chooser(env, seed + 1))  # state must not leak from one episode into the next
    replayed = iter(first.actions)
    second = _play(env, seed, len(first.actions), lambda t, info: (next(replayed), False))
    fix = ("draw every random choice from self.np_random (seeded by super().reset(seed=seed)), not from "
           "random, np.random or the clock, and set all episode state in reset")
    found = _first_difference(first.reset, second.reset, "(obs, info)")
    if found:
        raise _broken(env, "replay", f"reset(seed={seed}) twice gave different results: {found}", fix)
    names = "(obs, reward, terminated, truncated, info)"
    for t, (x, y) in enumerate(zip(first.results, second.results)):
        found = _first_difference(x, y, names)
        if found:
            raise _broken(env, "replay", f"replaying the seed-{seed} episode, step {t + 1} (action "
                          f"{_short(first.actions[t], 40)}) gave a different result: {found}", fix)
    if len(second.results) != len(first.results):
        raise _broken(env, "replay", f"the seed-{seed} episode ended after {len(first.results)} steps, its replay "
                      f"after {len(second.results)}", fix)
    return [a for a, result in zip(first.actions, first.results) if result[4]["valid_action"]]


# ----------------------------------------------------------------------------- malformed actions


def _check_malformed_actions(env: gym.Env, seed: int) -> None:
    over = True
    for action in MALFORMED_ACTIONS:
        if over:
            _reset(env, seed)
        where = f"malformed action {_short(action, 30)} after reset(seed={seed})"
        obs, _, terminated, truncated, info = _step(env, action, where, rule="malformed-action")
        over = terminated or truncated
        if not env.observation_space.contains(obs):
            raise _broken(env, "malformed-action", f"{where}: the observation is not in observation_space "
                          f"(its text has {len(obs['text'])} characters)", "answer junk with a short message; "
                          "quote at most a bounded prefix of the action back")
        if action == "" and (info["valid_action"] or info["won"]):
            raise _broken(env, "malformed-action", f"{where}: the empty action gave valid_action="
                          f"{info['valid_action']}, won={info['won']}", "treat the empty action as invalid: "
                          "return make_info(valid_action=False) and do not change the state")


# ----------------------------------------------------------------------------- action format


def _check_action_format(env: gym.Env, accepted: list[str]) -> None:
    """Malformed text parses as such; each action the env accepted survives format() then parse()
    (only accepted ones: a format may canonicalise what the env would refuse anyway)."""
    # PromptBuilder reads the format from the env class, with the same default
    fmt = getattr(type(env.unwrapped), "action_format", None) or ActionFormat()
    for text in MALFORMED_ACTIONS:
        try:
            parsed = fmt.parse(text)
        except Exception as exc:
            raise _broken(env, "action-format", f"{type(fmt).__name__}.parse({_short(text, 30)}) {_raised(exc)}",
                          "return ParsedAction(None, False, reason) for text that does not follow the format") from exc
        if text == "" and parsed.well_formed:
            raise _broken(env, "action-format", f"{type(fmt).__name__}.parse('') called empty text well formed",
                          "return ParsedAction(None, False, reason) for text that does not follow the format")
    for action in dict.fromkeys(accepted[:3]):
        text = fmt.format(action)
        parsed = fmt.parse(text)
        if not parsed.well_formed or parsed.action not in (action, action.strip()):
            raise _broken(env, "action-format", f"{type(fmt).__name__}.format({_short(action, 40)}) wrote "
                          f"{_short(text, 60)}, which parses back as {parsed}", "make parse(format(a)) return a, "
                          "well formed, for every action the env accepts (the expert policy and the probes rely on it)")


# ----------------------------------------------------------------------------- gymnasium


def _check_gymnasium(env: gym.Env) -> None:
    try:
        # Without a spec Gymnasium cannot build the other render modes (it would only warn so);
        # an env from gymnasium.make has one.
        gymnasium_check_env(env, skip_render_check=env.spec is None)
        if env.spec is None and env.render_mode is not None:
            env_render_passive_checker(env)
    except Exception as exc:
        raise _broken(env, "gymnasium", f"Gymnasium's env checker failed: {_raised(exc)}",
                      "see Gymnasium's message, and "
                      "https://gymnasium.farama.org/introduction/create_custom_env/") from exc
