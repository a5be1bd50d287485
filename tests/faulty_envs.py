"""Small deterministic envs for the EnvPool tests, including ones that fail on purpose.

`CounterEnv` starts from a value drawn from its seeded RNG and adds the integer in each action.
`FaultyEnv` behaves the same except on episodes reset with `bad_seed`, where it injects a fault:

    mode="raise"        step number `at_step` raises RuntimeError
    mode="hang"         step number `at_step` sleeps for `hang_seconds`
    mode="exit"         step number `at_step` calls os._exit(1)
    mode="kill"         step number `at_step` sends SIGKILL to its own process
    mode="unpicklable"  step number `at_step` returns a lambda in info (cannot be pickled)
    mode="unloadable"   step number `at_step` returns an object that pickles but cannot be unpickled
    mode="reset-raise" / "reset-hang" / "reset-kill"   the same, in reset
    mode="expert-hang"  expert_action() sleeps for `hang_seconds`
    mode="spawn"        the reset starts two `sleep 777` processes that close() leaves running: a
                        child, and one detached at once (re-parented to init, as after a double
                        fork); their pids are appended to the file `pid_file`, one a line
    mode="spawn-hang" / "spawn-exit"   the same, and step number `at_step` hangs / calls os._exit(1)

The envs at the end (`StepReturnsFourEnv` ... `NoOptionsEnv`) are CounterEnvs that each break one
rule of the env contract, for `envs.check_env` (tests/test_check_env.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from typing import Any

import numpy as np

from envs.base import ActionFormat, AgentEnv, observation_space


def _refuse_to_load() -> None:
    raise ImportError("this object cannot be rebuilt here")


class Unloadable:
    """Pickles fine, fails to unpickle (as would a class only the worker can import)."""

    def __reduce__(self) -> tuple:
        return (_refuse_to_load, ())


class CounterEnv(AgentEnv):
    """Deterministic given the seed: value = rng draw at reset, then value += int(action)."""

    observation_space = observation_space()
    instructions = "Reach a multiple of ten."

    def __init__(self, max_steps: int = 50):
        self.max_steps = max_steps
        self.value = 0
        self.steps = 0
        self.seed_used: int | None = None

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.seed_used = seed
        self.value = int(self.np_random.integers(0, 1_000_000))
        if options and "offset" in options:
            self.value += int(options["offset"])
        self.steps = 0
        return self._obs(), self.make_info(task=f"counter from {self.value}")

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        try:
            delta, valid = int(action), True
        except (TypeError, ValueError):
            delta, valid = 0, False
        self.value += delta
        self.steps += 1
        won = self.value % 10 == 0
        truncated = self.steps >= self.max_steps and not won
        return self._obs(), float(won), won, truncated, self.make_info(won=won, valid_action=valid)

    def _obs(self) -> dict:
        return self.make_obs(f"value={self.value} steps={self.steps}", anchor=f"value={self.value}")

    def expert_action(self) -> str:
        return str(-(self.value % 10) or 10)

    def state(self) -> tuple[int, int]:
        return self.value, self.steps

    def explode(self) -> None:
        raise ValueError("explode() always raises")


class FaultyEnv(CounterEnv):
    """A CounterEnv that injects the fault named by `mode` into episodes seeded with `bad_seed`."""

    def __init__(self, mode: str = "raise", bad_seed: int = 13, at_step: int = 1,
                 hang_seconds: float = 60.0, max_steps: int = 50, pid_file: str | None = None):
        super().__init__(max_steps=max_steps)
        self.mode = mode
        self.bad_seed = bad_seed
        self.at_step = at_step
        self.hang_seconds = hang_seconds
        self.pid_file = pid_file
        self.children: list[subprocess.Popen] = []

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed == self.bad_seed and self.mode.startswith("reset-"):
            self._fault(self.mode.removeprefix("reset-"))
        if seed == self.bad_seed and self.mode.startswith("spawn"):
            self._spawn()
        return super().reset(seed=seed, options=options)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        if self.seed_used == self.bad_seed and self.steps == self.at_step:
            if self.mode == "unpicklable":
                info = {**info, "callback": lambda: None}
            elif self.mode == "unloadable":
                info = {**info, "payload": Unloadable()}
            else:
                self._fault(self.mode.removeprefix("spawn-"))
        return obs, reward, terminated, truncated, info

    def expert_action(self) -> str:
        if self.seed_used == self.bad_seed and self.mode == "expert-hang":
            self._fault("hang")
        return super().expert_action()

    def _spawn(self) -> None:
        """Start a `sleep 777` child and a detached `sleep 777`; append their pids to `pid_file`."""
        child = subprocess.Popen(["sleep", "777"])
        self.children.append(child)
        detached = subprocess.run(["sh", "-c", "sleep 777 >/dev/null 2>&1 </dev/null & echo $!"],
                                  capture_output=True, text=True, check=True)
        if self.pid_file:
            with open(self.pid_file, "a") as file:
                file.write(f"{child.pid}\n{int(detached.stdout)}\n")

    def _fault(self, kind: str) -> Any:
        if kind == "raise":
            raise RuntimeError(f"injected fault at step {self.steps}")
        if kind == "hang":
            time.sleep(self.hang_seconds)
        elif kind == "exit":
            os._exit(1)
        elif kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return None


# ------------------------------------------------------------------------------------------------
# Envs that each break one rule of the groupwise env contract (tests/test_check_env.py): a
# CounterEnv with one thing wrong, so `envs.check_env` must name exactly that rule.


class StepReturnsFourEnv(CounterEnv):
    """api: the old gym step signature, (obs, reward, done, info)."""

    def step(self, action: str) -> tuple:  # type: ignore[override]
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or truncated, info


class ImagesAsFloatsEnv(CounterEnv):
    """observation: an image in [0, 1] floats instead of uint8 RGB."""

    def _obs(self) -> dict:
        return {**super()._obs(), "images": (np.zeros((4, 4, 3), dtype=np.float32),)}


class IntAnchorEnv(CounterEnv):
    """anchor: the state key is an int, not a str."""

    def _obs(self) -> dict:
        return {**super()._obs(), "anchor": self.value}


class NoWonEnv(CounterEnv):
    """info: step's info has no `won`."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        info.pop("won")
        return obs, reward, terminated, truncated, info


class NumpyBoolValidEnv(CounterEnv):
    """info: `valid_action` is a numpy bool, not a bool."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "valid_action": np.bool_(info["valid_action"])}


class NanRewardEnv(CounterEnv):
    """reward: NaN on a winning step."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float("nan") if info["won"] else reward, terminated, truncated, info


class LambdaInInfoEnv(CounterEnv):
    """picklable: the info carries a callback, which EnvPool cannot send to the parent."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "callback": lambda: None}


class WrongExpertEnv(CounterEnv):
    """expert: the expert spells its number out, which step cannot read."""

    def expert_action(self) -> str:
        return "ten"


class UnseededStepEnv(CounterEnv):
    """replay: each step adds a draw from the global (unseeded) random module."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        self.value += random.randrange(1_000_000)
        return super().step(action)


class LeaksAcrossEpisodesEnv(CounterEnv):
    """replay: an episode counter that reset does not clear shows in the observation, so the same
    seed looks different the second time it is played."""

    episodes = 0

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.episodes += 1
        return super().reset(seed=seed, options=options)

    def _obs(self) -> dict:
        return {**super()._obs(), "text": f"episode {self.episodes}: value={self.value}"}


class StrictParseEnv(CounterEnv):
    """malformed-action: a non-number action raises instead of being an invalid step."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        int(action)  # ValueError on junk
        return super().step(action)


class EmptyIsValidEnv(CounterEnv):
    """malformed-action: the empty action (unparsable agent text) counts as a valid move."""

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action or "0")
        return obs, reward, terminated, truncated, info


class _BracketFormat(ActionFormat):
    """Writes `[action]` but parses the default `<action>...</action>`."""

    def format(self, action: str, think: str = "") -> str:
        return f"[{action}]"


class MismatchedFormatEnv(CounterEnv):
    """action-format: format() writes what parse() cannot read back."""

    action_format = _BracketFormat()


class NoOptionsEnv(CounterEnv):
    """gymnasium: reset takes no `options`, which Gymnasium's API requires."""

    def reset(self, seed: int | None = None) -> tuple[dict, dict]:  # type: ignore[override]
        return super().reset(seed=seed)
