"""NumberLine: move the current number to the target with "+" and "-"."""

from __future__ import annotations

from typing import Any

from PIL import ImageDraw

from envs.cards.base import _CardGameEnv, _check_int
from envs.cards.render import draw_number_line


class NumberLineEnv(_CardGameEnv):
    """NumberLine: move the current number to the target with "+" (one up) and "-" (one down).

    Both lie in [0, max_position] and differ at the start. Rewards (gym-cards): +1 on reaching the
    target (episode ends), -1 for a move that does not bring current closer (including bumping
    into an end of the line and any text that is not "+" or "-"), else 0. The episode is truncated
    after 2 * max_position steps. `info["task_type"]` says on which side of the start the target
    lies ("target below" or "target above"), so success is reported per side: a policy that always
    moves one way wins about half the games, all on one side.
    """

    ACTIONS = ("-", "+")
    instructions = (
        "NumberLine: a target number and a current number lie on a line (drawn or written). Move the current "
        "number to the target by adding one ('+') or subtracting one ('-') each turn. Reaching the target "
        "earns +1 and ends the game; a move that does not bring the current number closer costs -1."
    )

    def __init__(self, max_position: int = 5, max_steps: int | None = None, obs_mode: str = "image",
                 image_size: int = 300, render_mode: str | None = None):
        self.max_position = _check_int("max_position", max_position, 1, 100)
        super().__init__(obs_mode, image_size, 2 * self.max_position if max_steps is None else max_steps,
                         render_mode)
        self.current = self.target = 0
        self._side = ""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Random distinct start and target, or `options={"current": c, "target": t}`."""
        super().reset(seed=seed)
        if options and ("current" in options or "target" in options):
            self.current = _check_int("options['current']", options.get("current"), 0, self.max_position)
            self.target = _check_int("options['target']", options.get("target"), 0, self.max_position)
        else:
            self.current, self.target = (int(v) for v in self.np_random.choice(self.max_position + 1, 2,
                                                                                replace=False))
        self._steps, self._started, self._over = 0, True, self.current == self.target
        self._side = ("target below" if self.target < self.current else "target above" if self.target > self.current
                      else "at the target")
        return self._obs(), self._info(valid_action=True, won=self._over)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        move = self._begin_step(action)
        before = abs(self.current - self.target)
        if move is not None:
            self.current = min(self.max_position, max(0, self.current + (1 if move == "+" else -1)))
        after = abs(self.current - self.target)
        won = after == 0
        reward = 1.0 if won else (-1.0 if after >= before else 0.0)
        truncated = not won and self._steps >= self.max_steps
        self._over = won or truncated
        return self._obs(), reward, won, truncated, self._info(move is not None, won=won)

    def expert_action(self) -> str:
        """Step toward the target."""
        self._require_started()
        return "+" if self.target > self.current else "-"

    def _info(self, valid_action: bool, won: bool = False, **extra: Any) -> dict:
        return super()._info(valid_action, won=won, task_type=self._side, **extra)

    @property
    def task(self) -> str:
        return f"Move the current number to the target number (both between 0 and {self.max_position})."

    def _anchor(self) -> str:
        return f"current={self.current}|target={self.target}"

    def _state_text(self) -> str:
        return f"Target: {self.target}. Current: {self.current}."

    def _image_text(self) -> str:
        return "The image shows the target number and the current number, in words and on the line."

    def _background(self) -> tuple[int, int, int]:
        return (255, 255, 255)

    def _draw(self, draw: ImageDraw.ImageDraw, size: int) -> None:
        draw_number_line(draw, size, self.current, self.target, self.max_position)
