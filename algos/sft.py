"""Supervised warm start from expert trajectories.

Expert episodes are collected with the same rollout engine and prompt builder as RL, so the SFT rows
and the RL rows see identical prompts. The loss is next-token cross-entropy on response tokens only.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from agents.forward import sequence_logprobs
from agents.prompts import PromptBuilder
from agents.records import StepRecord
from agents.rollout import collect
from agents.simple import ExpertPolicy
from algos import distributed as dist
from algos.batching import Row, chat_prompt_ids, micro_batches, minibatches, pixel_kwargs, response_ids_for
from algos.memory import training_memory


def collect_expert_steps(pool: Any, prompt: PromptBuilder, task_seeds: Sequence[int], noise: float, noise_seed: int,
                         batch_episodes: int | None = None) -> tuple[list[StepRecord], dict[str, float]]:
    """Play one expert episode (a `noise` share of random moves) per task seed; return all their steps."""
    policy = ExpertPolicy(prompt.action_format, noise=noise, seed=noise_seed)
    batch = batch_episodes or pool.num_envs
    steps: list[StepRecord] = []
    wins = 0
    for start in range(0, len(task_seeds), batch):
        ro = collect(pool, policy, list(task_seeds[start:start + batch]), group_size=1, prompt=prompt)
        steps += ro.steps
        wins += sum(t.won for t in ro.trajectories)
    return steps, {"sft_data_success": wins / max(len(task_seeds), 1), "sft_rows": float(len(steps))}


def sft_rows(tokenizer: Any, steps: Sequence[StepRecord], policy: Any = None) -> list[Row]:
    """One row per expert step. Chats with images need a VLM `policy` (HFPolicy): its processor
    expands the image tokens and gives the rows their pixel inputs."""
    if policy is None or not getattr(policy, "is_vlm", False):
        if any(isinstance(m.get("content"), list) for s in steps for m in s.messages):
            raise ValueError("sft_rows: the expert chats carry images; pass policy= (a VLM HFPolicy) to encode them")
        return [Row(chat_prompt_ids(tokenizer, s.messages), response_ids_for(tokenizer, s.response)) for s in steps]
    from agents.policy import Request

    rows = []
    for s in steps:
        (ids,), (mm,) = policy.encode_requests([Request(messages=s.messages)])
        rows.append(Row(ids, response_ids_for(tokenizer, s.response), pixel_inputs=mm))
    return rows


def train_sft(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Row], epochs: int = 2, lr: float = 2e-3,
              batch_size: int = 32, seed: int = 0, progress: bool = True,
              max_tokens_per_micro_batch: int | None = None, shared_prefix: bool = True) -> dict[str, float]:
    """Fit response tokens with AdamW; returns the final loss and throughput.

    Each optimizer step fits `batch_size` rows; with `max_tokens_per_micro_batch` their forward and
    backward go in micro-batches of at most that many padded tokens (gradients accumulate, so the
    step is the same; memory follows the micro-batch). `shared_prefix` encodes the prompt prefix
    rows share (the env's instructions) once per micro-batch (algos/prefix_forward.py): same loss,
    fewer tokens through the model.

    Distributed runs pass the DDP/FSDP training module (`algos.distributed.wrap_model`) and the same
    rows on every rank: each rank fits a slice of every minibatch, and the loss is normalised by the
    minibatch's token count over all ranks, so the step matches a single process's.
    """
    ctx = dist.context()
    if shared_prefix:
        from algos.prefix_forward import shared_prefix_logprobs as forward  # imports transformers
    else:
        forward = sequence_logprobs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = epochs * ((len(rows) + batch_size - 1) // batch_size)
    # Short warmup, then constant: small models trained from scratch sit on a plateau (the action
    # marginal) before they pick up the observation, and a decaying rate can stall them there.
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup))
    rng = random.Random(seed)
    model.train()
    losses: list[float] = []
    tokens, t0 = 0, time.perf_counter()
    bar = tqdm(total=total, desc="sft", disable=not progress or not dist.is_main())
    with training_memory():
        for _ in range(epochs):
            for mb in minibatches(rows, batch_size, rng):
                opt.zero_grad(set_to_none=True)
                if ctx.active:
                    loss = _distributed_backward(model, tokenizer.pad_token_id, mb)
                else:
                    loss = _accumulate(model, tokenizer.pad_token_id, mb, max_tokens_per_micro_batch, forward)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                losses.append(loss.item())
                tokens += sum(len(r.response_ids) for r in mb)
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {"sft_loss": sum(tail) / len(tail), "sft_tokens_per_s": tokens / max(time.perf_counter() - t0, 1e-9)}



def _accumulate(model: torch.nn.Module, pad_id: int, mb: list[Row], max_tokens: int | None,
                forward: Callable = sequence_logprobs) -> torch.Tensor:
    """Backward of minibatch `mb`'s mean token negative log-likelihood, micro-batch by micro-batch;
    returns that loss."""
    total = max(sum(len(r.response_ids) for r in mb), 1)
    loss = torch.zeros(())
    for micro in micro_batches(mb, len(mb), max_tokens):
        logp, mask, _ = forward(model, [r.prompt_ids for r in micro], [r.response_ids for r in micro],
                                pad_id=pad_id, **pixel_kwargs(micro))
        part = -(logp * mask).sum() / total
        part.backward()
        loss += part.detach()
    return loss


def _distributed_backward(model: torch.nn.Module, pad_id: int, mb: list[Row]) -> torch.Tensor:
    """Backward of this rank's slice of minibatch `mb`; returns the whole minibatch's loss.

    Each rank sums its tokens' negative log-likelihood and divides by the global token count; times
    the world size because DDP/FSDP average gradients. A rank without rows (a minibatch smaller than
    the world) runs a zero-weight forward on a borrowed row so that the collectives line up.
    """
    world = dist.context().world
    total = max(sum(len(r.response_ids) for r in mb), 1)
    lo, hi = dist.shard_range(len(mb))
    share, weight = (mb[lo:hi], 1.0) if hi > lo else (mb[:1], 0.0)
    logp, mask, _ = sequence_logprobs(model, [r.prompt_ids for r in share], [r.response_ids for r in share],
                                      pad_id=pad_id, **pixel_kwargs(share))
    nll = -(logp * mask).sum() * weight
    (nll * (world / total)).backward()
    summed = nll.detach().reshape(1).clone()
    torch.distributed.all_reduce(summed)
    return summed[0] / total
