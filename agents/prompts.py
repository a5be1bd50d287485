"""Prompts with memory: the task, the last k (observation, action) pairs, the current observation.

This is the step-independent layout of algorithms.md §0.2: every turn's prompt is rebuilt from the
memory, so every agent decision is its own training row. `history_length` must match what the
estimators assume (HGPO checks it).

Image observations: the chat's user message becomes a list of content parts, the images of the last
`image_history` steps (the current one included; default 1, the current frame only) followed by the
text, in the format `agents.vlm` encodes. Text-only observations keep plain string content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from envs.base import ActionFormat

DEFAULT_TEMPLATE = (
    "{instructions}\n{format}\n"
    "{history}"
    "Current observation (step {step}):\n{observation}\n"
    "{admissible}"
)

#: For models trained from scratch on one env (the tiny model): the instructions carry no
#: information such a model can use, and leaving them out makes prompts ~3x shorter.
COMPACT_TEMPLATE = "{history}Current observation (step {step}):\n{observation}\n{admissible}"

#: Per-environment templates; users override with `PromptBuilder(template=...)` or by adding here.
TEMPLATES: dict[str, str] = {}


@dataclass
class PromptBuilder:
    instructions: str = ""
    action_format: ActionFormat = ActionFormat()
    history_length: int = 2
    template: str = DEFAULT_TEMPLATE
    show_admissible: bool = True
    #: Steps whose images the prompt carries, the current one included (1 = the current frame only;
    #: 0 = none, text only). Only matters for environments whose observations carry images.
    image_history: int = 1

    @classmethod
    def for_env(cls, env_id: str, compact: bool = False, **overrides: Any) -> "PromptBuilder":
        """A builder that uses the env class's `instructions`, `action_format` and template
        (or `COMPACT_TEMPLATE` with `compact=True`)."""
        from envs.registry import spec

        env_cls = spec(env_id).load()
        kwargs: dict[str, Any] = {
            "instructions": getattr(env_cls, "instructions", ""),
            "action_format": getattr(env_cls, "action_format", ActionFormat()),
            "template": COMPACT_TEMPLATE if compact else TEMPLATES.get(env_id, DEFAULT_TEMPLATE),
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def messages(
        self,
        observation: str,
        history: Sequence[tuple[str, str]] = (),
        step: int = 0,
        admissible: Sequence[str] | None = None,
        frames: Sequence[Sequence[Any]] = (),
    ) -> list[dict[str, Any]]:
        """The chat for one decision; `history` holds all past (observation, action) pairs.

        `frames`: the images of each step so far, oldest first, the last entry the current
        observation's; the last `image_history` entries go into the prompt.
        """
        kept = list(history)[-self.history_length:] if self.history_length > 0 else []
        first = step - len(kept)
        history_text = "".join(
            f"Observation (step {first + i}):\n{obs}\nAction: {act}\n" for i, (obs, act) in enumerate(kept)
        )
        adm = ""
        if self.show_admissible and admissible:
            adm = "Admissible actions: " + ", ".join(admissible) + "\n"
        content = self.template.format(
            instructions=self.instructions.strip(),
            format=self.action_format.instruction(),
            history=history_text,
            step=step,
            observation=observation,
            admissible=adm,
        )
        text = content.strip()
        kept_frames = list(frames)[-self.image_history:] if self.image_history > 0 else []
        if not any(len(f) for f in kept_frames):
            return [{"role": "user", "content": text}]
        return [{"role": "user", "content": frame_parts(kept_frames, step, text)}]



def frame_parts(frames: Sequence[Sequence[Any]], step: int, text: str) -> list[dict[str, Any]]:
    """Content parts of a prompt with images: each kept step's images, then `text`.

    `frames` are the kept steps' images, oldest first, the last the current step's. With one step
    kept its images come without a label; with more, each step's images follow "Image (step s):"
    so the model can tell past frames from the current one.
    """
    parts: list[dict[str, Any]] = []
    first = step - len(frames) + 1
    for i, images in enumerate(frames):
        if not len(images):
            continue
        if len(frames) > 1:
            parts.append({"type": "text", "text": f"Image (step {first + i}):"})
        parts.extend({"type": "image", "image": im} for im in images)
    parts.append({"type": "text", "text": text})
    return parts
