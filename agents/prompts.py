"""Prompts with memory: the task, the last k (observation, action) pairs, the current observation.

This is the step-independent layout of algorithms.md §0.2: every turn's prompt is rebuilt from the
memory, so every agent decision is its own training row. `history_length` must match what the
estimators assume (HGPO checks it).
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
    ) -> list[dict[str, str]]:
        """The chat for one decision; `history` holds all past (observation, action) pairs."""
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
        return [{"role": "user", "content": content.strip()}]
