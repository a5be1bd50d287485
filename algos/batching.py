"""Training rows (one per agent step, algorithms.md §0.2 layout 1) and their micro-batches."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch


@dataclass
class Row:
    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    old_logprobs: torch.Tensor | None = None  # [len(response_ids)], recomputed by the trainer
    ref_logprobs: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant header, as the rollout builds them."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # newer transformers return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def response_ids_for(tokenizer: Any, text: str) -> list[int]:
    """The ids a model emits to write `text` and stop: the text's tokens plus the end-of-turn token."""
    return list(tokenizer.encode(text, add_special_tokens=False)) + [tokenizer.eos_token_id]


def prompt_groups(prompt_ids_list: Sequence[Sequence[int]]) -> list[list[int]]:
    """Row indices grouped by identical prompt ids, in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompt_ids_list):
        groups.setdefault(tuple(int(t) for t in p), []).append(i)
    return list(groups.values())


def minibatches(rows: Sequence[Row], size: int, rng: random.Random, by_prompt: bool = False) -> Iterator[list[Row]]:
    """Shuffled minibatches of `size` rows (the last one shorter).

    by_prompt: shuffle blocks of rows with the same prompt as units, so a block is split only where
    it straddles a minibatch boundary and the shared-prefix forward encodes its prompt once.
    The number and sizes of minibatches are the same either way.
    """
    if by_prompt:
        blocks = prompt_groups([r.prompt_ids for r in rows])
        rng.shuffle(blocks)
        order = [i for block in blocks for i in block]
    else:
        order = list(range(len(rows)))
        rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [rows[i] for i in order[start:start + size]]


def micro_batches(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    """Split into micro-batches of similar lengths so little compute goes to padding.

    Rows with the same prompt end up next to each other, so a micro-batch holds whole groups of
    them and the shared-prefix forward (algorithms.md §15) can encode each prompt once.
    """
    by_len = sorted(rows, key=lambda r: (len(r.prompt_ids), tuple(r.prompt_ids), len(r.response_ids)))
    for start in range(0, len(by_len), size):
        yield by_len[start:start + size]
