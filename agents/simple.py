"""Scripted policies: `ExpertPolicy` (the env's solver, optionally noisy) and `RandomPolicy`.

They speak the env's action format exactly as a model would, so their trajectories can be used as
SFT data and as upper/lower bounds in reports.
"""

from __future__ import annotations

import random
from typing import Sequence

from agents.policy import Generation, Request, SamplingParams
from envs.base import ActionFormat


class ExpertPolicy:
    """Plays `expert_action()`; with `noise > 0` a share of moves is random (imperfect SFT data)."""

    needs_expert_action = True

    def __init__(self, action_format: ActionFormat | None = None, noise: float = 0.0, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.action_format = action_format or ActionFormat()
        self.noise = noise
        self.rng = random.Random(seed)

    def generate(self, requests: Sequence[Request], sampling: SamplingParams) -> list[Generation]:
        out = []
        for r in requests:
            action = r.meta["expert_action"]
            choices = r.meta.get("admissible_actions") or []
            if self.noise and choices and self.rng.random() < self.noise:
                action = self.rng.choice(choices)
            out.append(Generation(text=self.action_format.format(action)))
        return out


class RandomPolicy:
    """Uniform over the env's admissible actions (needs `info["admissible_actions"]`)."""

    needs_expert_action = False

    def __init__(self, action_format: ActionFormat | None = None, seed: int = 0):
        self.action_format = action_format or ActionFormat()
        self.rng = random.Random(seed)

    def generate(self, requests: Sequence[Request], sampling: SamplingParams) -> list[Generation]:
        out = []
        for r in requests:
            choices = r.meta.get("admissible_actions")
            if not choices:
                raise ValueError("RandomPolicy needs an env that reports info['admissible_actions']")
            out.append(Generation(text=self.action_format.format(self.rng.choice(choices))))
        return out
