"""One RL iteration: rollout -> old logprobs -> advantages -> PPO epochs -> (weights are shared).

The hf backend generates with the very model the optimizer updates, so "weight sync" is free here;
other backends receive the new weights from `sync_weights` after each update.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import numpy as np
import torch

from agents.hf import sequence_logprobs
from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.records import Trajectory
from agents.rollout import Rollout, collect
from algos.advantages import compute_advantages
from algos.gigpo import gigpo_diagnostics
from algos.batching import Row, micro_batches, minibatches
from algos.losses import agg_loss, low_var_kl, ppo_clip_loss
from algos.steptable import StepTable
from algos.train_config import TrainConfig


def estimator_config(cfg: TrainConfig) -> dict[str, Any]:
    """The config section named after the estimator (empty when it has none)."""
    section = getattr(cfg.algo, cfg.algo.name.replace("-", "_"), None)
    return dataclasses.asdict(section) if dataclasses.is_dataclass(section) else {}


def rows_with_advantages(trajectories: list[Trajectory], cfg: TrainConfig) -> tuple[list[Row], dict[str, float]]:
    """Per-step rows carrying their advantage; infrastructure failures are left out of training."""
    steps = [s for t in trajectories if t.error is None for s in t.steps]
    if not steps:
        return [], {}
    table = StepTable.from_records(steps)
    adv = compute_advantages(cfg.algo.name, table, **estimator_config(cfg))
    rows = [Row(s.prompt_ids, s.response_ids, float(a), meta={"rollout_logprobs": s.logprobs})
            for s, a in zip(steps, adv) if s.response_ids]
    stats = {"adv_mean": float(adv.mean()), "adv_std": float(adv.std()), "adv_min": float(adv.min()),
             "adv_max": float(adv.max()), "adv_zero_share": float(np.mean(np.abs(adv) < 1e-8))}
    # Anchor-group sizes are worth watching for every estimator: they say how much step-level
    # credit GiGPO could find in this batch.
    stats.update({k.replace("step_group/", "step_group_"): float(v) for k, v in gigpo_diagnostics(table).items()})
    return rows, stats


class RLTrainer:
    def __init__(self, cfg: TrainConfig, policy: Any, pool: Any, prompt: PromptBuilder,
                 ref_model: torch.nn.Module | None = None):
        self.cfg, self.policy, self.pool, self.prompt = cfg, policy, pool, prompt
        self.model: torch.nn.Module = policy.model
        self.pad_id = policy.tokenizer.pad_token_id
        self.ref_model = ref_model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.rl.lr, weight_decay=cfg.rl.weight_decay)

    # -- rollout ---------------------------------------------------------------------------------
    def task_seeds(self, iteration: int) -> list[int]:
        n = self.cfg.rl.tasks_per_iter
        return [self.cfg.seed * 1_000_003 + iteration * n + k for k in range(n)]

    def collect(self, iteration: int) -> Rollout:
        rl = self.cfg.rl
        sampling = SamplingParams(temperature=rl.temperature, top_p=rl.top_p, max_new_tokens=rl.max_new_tokens,
                                  seed=self.cfg.seed * 7_919 + iteration)
        self.model.eval()
        return collect(self.pool, self.policy, self.task_seeds(iteration), rl.group_size, sampling, self.prompt,
                       first_group_id=iteration * rl.tasks_per_iter)

    # -- update ----------------------------------------------------------------------------------
    @torch.no_grad()
    def attach_logprobs(self, rows: list[Row]) -> None:
        """Old (and reference) logprobs for the PPO ratio (and the KL term).

        verl recomputes old logprobs because its sampler (vLLM) differs numerically from the
        trainer; so do we by default. The hf backend samples with the trainer's own weights and its
        logprobs match a recomputation to ~1e-6 (tests/test_hf.py), so `rl.recompute_old_logprobs=false`
        may reuse them and skip a forward pass.
        """
        need_old = self.cfg.rl.recompute_old_logprobs
        need_ref = self.ref_model is not None and self.cfg.loss.kl_coef > 0
        for r in rows:
            if not need_old:
                r.old_logprobs = torch.tensor(r.meta["rollout_logprobs"], dtype=torch.float32)
        if not (need_old or need_ref):
            return
        for mb in micro_batches(rows, self.cfg.rl.micro_batch_size):
            prompts, responses = [r.prompt_ids for r in mb], [r.response_ids for r in mb]
            logp = sequence_logprobs(self.model, prompts, responses, pad_id=self.pad_id)[0] if need_old else None
            ref = sequence_logprobs(self.ref_model, prompts, responses, pad_id=self.pad_id)[0] if need_ref else None
            for k, r in enumerate(mb):
                n = len(r.response_ids)
                if logp is not None:
                    r.old_logprobs = logp[k, :n].clone()
                if ref is not None:
                    r.ref_logprobs = ref[k, :n].clone()

    def update(self, rows: list[Row], iteration: int) -> dict[str, float]:
        cfg, loss_cfg = self.cfg.rl, self.cfg.loss
        self.model.train()
        rng = random.Random(self.cfg.seed * 1_009 + iteration)
        sums: dict[str, float] = {}
        n_steps = 0
        for _ in range(cfg.ppo_epochs):
            for mb in minibatches(rows, cfg.minibatch_size, rng):
                stats = self._minibatch_step(mb, loss_cfg)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_steps += 1
        self.model.eval()
        return {k: v / max(n_steps, 1) for k, v in sums.items()}

    def _minibatch_step(self, mb: list[Row], loss_cfg: Any) -> dict[str, float]:
        token_level = loss_cfg.agg == "token-mean"
        total_tokens = sum(len(r.response_ids) for r in mb)
        self.optimizer.zero_grad(set_to_none=True)
        acc: dict[str, float] = {}
        for micro in micro_batches(mb, self.cfg.rl.micro_batch_size):
            logp, mask, entropy = sequence_logprobs(self.model, [r.prompt_ids for r in micro],
                                                    [r.response_ids for r in micro], pad_id=self.pad_id,
                                                    return_entropy=True)
            old = _pad([r.old_logprobs for r in micro], logp.shape[1])
            adv = torch.tensor([r.advantage for r in micro], dtype=logp.dtype)
            loss, stats = ppo_clip_loss(logp, old, adv, mask, clip_low=loss_cfg.clip_low,
                                        clip_high=loss_cfg.clip_high, clip_ratio_c=loss_cfg.clip_ratio_c,
                                        agg=loss_cfg.agg)
            ent = agg_loss(entropy, mask, loss_cfg.agg)
            if loss_cfg.entropy_coef:
                loss = loss - loss_cfg.entropy_coef * ent
            if loss_cfg.kl_coef and micro[0].ref_logprobs is not None:
                kl = agg_loss(low_var_kl(logp, _pad([r.ref_logprobs for r in micro], logp.shape[1])), mask,
                              loss_cfg.agg)
                loss = loss + loss_cfg.kl_coef * kl
                stats["kl"] = kl.detach()
            # Weight micro-batches so the accumulated gradient equals the minibatch aggregate.
            weight = (float(mask.sum()) / total_tokens) if token_level else len(micro) / len(mb)
            (loss * weight).backward()
            stats = {**{k: float(v) for k, v in stats.items()}, "pg_loss": float(loss.detach()),
                     "entropy": float(ent.detach())}
            for k, v in stats.items():
                acc[k] = acc.get(k, 0.0) + weight * v
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.rl.max_grad_norm)
        self.optimizer.step()
        acc["grad_norm"] = float(grad_norm)
        return acc

    # -- one iteration ---------------------------------------------------------------------------
    def iteration(self, iteration: int) -> dict[str, float]:
        t0 = time.perf_counter()
        rollout = self.collect(iteration)
        t1 = time.perf_counter()
        rows, adv_stats = rows_with_advantages(rollout.trajectories, self.cfg)
        self.attach_logprobs(rows)
        t2 = time.perf_counter()
        upd = self.update(rows, iteration) if rows else {}
        t3 = time.perf_counter()
        tokens = sum(len(r.response_ids) + len(r.prompt_ids) for r in rows)
        m = {f"rollout/{k}": v for k, v in rollout.metrics.items()}
        m.update({f"adv/{k}": v for k, v in adv_stats.items()})
        m.update({f"train/{k}": v for k, v in upd.items()})
        m.update({"time/rollout": t1 - t0, "time/prepare": t2 - t1, "time/update": t3 - t2,
                  "train/rows": float(len(rows)), "train/tokens_per_s": tokens / max(t3 - t1, 1e-9)})
        return m


def _pad(tensors: list[torch.Tensor | None], width: int) -> torch.Tensor:
    out = torch.zeros(len(tensors), width)
    for k, t in enumerate(tensors):
        if t is not None:
            out[k, : t.shape[0]] = t
    return out


def evaluate(policy: Any, pool: Any, prompt: PromptBuilder, cfg: TrainConfig) -> dict[str, float]:
    """Success on the fixed, seeded evaluation rooms (one episode each)."""
    ev = cfg.eval
    sampling = SamplingParams(temperature=ev.temperature, max_new_tokens=cfg.rl.max_new_tokens, seed=ev.seed,
                              greedy=ev.greedy)
    seeds = list(range(ev.seed, ev.seed + ev.episodes))
    policy.model.eval()
    trajs: list[Trajectory] = []
    for start in range(0, len(seeds), pool.num_envs):
        trajs += collect(pool, policy, seeds[start:start + pool.num_envs], 1, sampling, prompt).trajectories
    n = max(len(trajs), 1)
    return {"success": sum(t.won for t in trajs) / n, "return": sum(t.episode_return for t in trajs) / n,
            "steps": sum(t.length for t in trajs) / n}
