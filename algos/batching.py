"""Training rows (one per agent step, algorithms.md §0.2 layout 1) and their micro-batches."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch


@dataclass
class Row:
    """One agent step as the loss reads it. The trainer builds rows from a scored batch
    (algos/advantage_rows.py); SFT and benchmarks build them from token ids alone."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    turn: int = 0  # the step's turn in its episode (EPO keeps an entropy history per turn)
    #: the sampler's log-probs of response_ids, reused when rl.recompute_old_logprobs=false
    rollout_logprobs: list[float] | None = None
    value: float | None = None  # the critic's value of the prompt, for estimators that learn one
    #: the estimator's other per-row outputs by name: "clip" (A2TGPO's per-turn clip range), "return"
    columns: dict[str, float] = field(default_factory=dict)
    #: played by this process. A distributed run trains each rank on the rows it played, whose
    #: chats and pixels it holds; the others' rows carry their ids and columns only.
    local: bool = True
    old_logprobs: torch.Tensor | None = None  # [len(response_ids)], recomputed by the trainer
    ref_logprobs: torch.Tensor | None = None
    #: VLM rows: the prompt images' processed inputs from the rollout ({"pixel_values": [patches, dim],
    #: "image_grid_thw": [images, 3]}), matching the image pad tokens in `prompt_ids`; {} for text.
    pixel_inputs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def pixel_kwargs(rows: Sequence[Row]) -> dict[str, torch.Tensor]:
    """`sequence_logprobs` keyword arguments for the rows' images, concatenated in row order ({} if none)."""
    from agents.vlm import concat_pixel_inputs

    return concat_pixel_inputs([r.pixel_inputs for r in rows])


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant header, as the rollout builds them.

    Text chats only: a chat with images needs the VLM's processor (`HFPolicy.encode_requests`)
    to expand its image tokens.
    """
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
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(_prompt_key(r), []).append(i)
        blocks = list(groups.values())
        rng.shuffle(blocks)
        order = [i for block in blocks for i in block]
    else:
        order = list(range(len(rows)))
        rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [rows[i] for i in order[start:start + size]]


def micro_batches(rows: Sequence[Row], size: int, max_tokens: int | None = None) -> Iterator[list[Row]]:
    """Split into micro-batches of similar lengths so little compute goes to padding: at most `size`
    rows, and at most `max_tokens` padded tokens (rows x longest row) when given; a row longer than
    `max_tokens` goes alone.

    Rows with the same prompt end up next to each other, so a micro-batch holds whole groups of
    them and the shared-prefix forward (algorithms.md §15) can encode each prompt once.
    """
    by_len = sorted(rows, key=lambda r: (len(r.prompt_ids), _prompt_key(r), len(r.response_ids)))
    batch: list[Row] = []
    longest = 0
    for row in by_len:
        n = len(row.prompt_ids) + len(row.response_ids)
        if batch and (len(batch) == size or (max_tokens and (len(batch) + 1) * max(longest, n) > max_tokens)):
            yield batch
            batch, longest = [], 0
        batch.append(row)
        longest = max(longest, n)
    if batch:
        yield batch


def _prompt_key(row: Row) -> tuple:
    """What makes two rows' prompts identical: the ids, and for VLM rows the pixels too (image pad
    tokens are the same for any image of one size)."""
    key = tuple(row.prompt_ids)
    pixels = (getattr(row, "pixel_inputs", None) or {}).get("pixel_values")  # duck-typed rows: text
    if pixels is None:
        return key
    return key + (pixel_digest(pixels),)


def pixel_digest(pixel_values: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha1(pixel_values.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
