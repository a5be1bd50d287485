"""What the four card games share: observation modes, the image, rendering, step bookkeeping and
argument checks (`_CardGameEnv`, `_check_int`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from envs.base import AgentEnv, observation_space
from envs.cards.render import TABLE_GREEN

OBS_MODES: tuple[str, ...] = ("text", "image", "both")
RENDER_MODES: tuple[str | None, ...] = (None, "ansi", "rgb_array")
MIN_IMAGE_SIZE = 96


class _CardGameEnv(AgentEnv):
    """Observation modes, images, rendering and step bookkeeping shared by the four games."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    ACTIONS: tuple[str, ...] = ()

    def __init__(self, obs_mode: str, image_size: int, max_steps: int, render_mode: str | None):
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {', '.join(map(repr, OBS_MODES))}; got {obs_mode!r}")
        if render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be None, 'ansi' or 'rgb_array'; got {render_mode!r}")
        self.image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE)
        self.max_steps = _check_int("max_steps", max_steps, 1)
        self.obs_mode = obs_mode
        self.render_mode = render_mode
        self.observation_space = observation_space(
            image_shape=None if obs_mode == "text" else (self.image_size, self.image_size))
        self._steps = 0
        self._started = False
        self._over = False

    # Each game fills in these: its state key, the state in words (text modes), what the picture
    # shows (image mode), and the drawing itself.
    def _anchor(self) -> str:
        raise NotImplementedError

    def _state_text(self) -> str:
        raise NotImplementedError

    def _image_text(self) -> str:
        raise NotImplementedError

    def _draw(self, draw: ImageDraw.ImageDraw, size: int) -> None:
        raise NotImplementedError

    def _background(self) -> tuple[int, int, int]:
        return TABLE_GREEN

    def legal_actions(self) -> list[str]:
        """The actions that are legal now (all of `ACTIONS` unless a game restricts them)."""
        return list(self.ACTIONS)

    @property
    def task(self) -> str:
        raise NotImplementedError

    def image(self) -> np.ndarray:
        """The current state drawn as an RGB uint8 array (image_size x image_size)."""
        img = Image.new("RGB", (self.image_size, self.image_size), self._background())
        self._draw(ImageDraw.Draw(img), self.image_size)
        return np.asarray(img, dtype=np.uint8)

    def render(self) -> str | np.ndarray | None:
        self._require_started()
        if self.render_mode == "ansi":
            return self._anchor()
        if self.render_mode == "rgb_array":
            return self.image()
        return None

    def _begin_step(self, action: Any) -> str | None:
        """Checks the episode is running, counts the step, returns the normalised action or None."""
        self._require_started()
        if self._over:
            raise RuntimeError(f"{type(self).__name__}: the episode is over; call reset() before step()")
        self._steps += 1
        name = action.strip() if isinstance(action, str) else None
        return name if name in self.ACTIONS else None

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step(), render() or expert_action()")

    def _obs(self) -> dict:
        hint = f"Step {self._steps}/{self.max_steps}. Write one action as <action>...</action>, one of: " \
               f"{', '.join(self.ACTIONS)}."
        state = self._image_text() if self.obs_mode == "image" else self._state_text()
        images = () if self.obs_mode == "text" else (self.image(),)
        return self.make_obs(f"{self.task}\n{state}\n{hint}", anchor=self._anchor(), images=images)

    def _info(self, valid_action: bool, won: bool = False, **extra: Any) -> dict:
        legal = self.legal_actions()
        # A VLM must read the cards off the image; listing the legal numbers in the prompt would
        # give them away, so image-only observations list every action instead (as the suite's
        # prompts do). `legal_actions` always holds the legal ones.
        admissible = list(self.ACTIONS) if self.obs_mode == "image" else legal
        return self.make_info(won=won, valid_action=valid_action, admissible_actions=admissible,
                              legal_actions=legal, task=self.task, steps=self._steps, **extra)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)
