"""The policy contract: `generate(requests, sampling) -> generations`.

A request is a chat (list of {"role", "content"} messages; VLM requests also carry images). A
generation holds the text, the prompt and response token ids and the response token logprobs
under the sampling distribution's model (temperature 1 logits of the rollout weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int | None = None
    greedy: bool = False  # argmax decoding; temperature and top_p are then ignored


@dataclass
class Request:
    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    #: Extra per-request data a policy may use (the expert policy reads "expert_action" here).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    text: str
    prompt_ids: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    #: True when generation stopped at max_new_tokens rather than EOS or a stop string.
    truncated: bool = False
    #: VLM policies: the prompt's processed images ({"pixel_values", "image_grid_thw"}) that the
    #: forward pass took with `prompt_ids`; {} for text prompts. Training reuses them as they are.
    pixel_inputs: dict[str, Any] = field(default_factory=dict, repr=False)


@runtime_checkable
class Policy(Protocol):
    #: Policies that read `Request.meta["expert_action"]` set this so the engine fetches it.
    needs_expert_action: bool

    def generate(self, requests: Sequence[Request], sampling: SamplingParams) -> list[Generation]: ...
