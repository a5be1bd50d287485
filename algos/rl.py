"""One RL iteration: rollout -> old logprobs -> advantages -> PPO epochs -> (weights are shared).

The hf backend generates with the very model the optimizer updates, so "weight sync" is free here;
other backends receive the new weights from `sync_weights` after each update.
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext as _null
from typing import Any

import torch

from agents.forward import sequence_logprobs
from agents.policy import SamplingParams
from agents.prompts import PromptBuilder
from agents.records import Trajectory
from agents.rollout import Rollout
from algos import distributed as dist
from algos.batching import Row, micro_batches, minibatches, pixel_kwargs
from algos.memory import training_memory
from algos.losses import (agg_loss, epo_phase_weight, epo_regularizer, low_var_kl, policy_loss, policy_loss_agg,
                          value_loss)
from algos.advantage_rows import (ScoredBatch, estimator_options, healthy_steps, informative_groups,
                                  rollouts_per_task, rows_from_scored, score_batch, step_ranks)
from algos.collection import collect_groups
from algos.train_config import TrainConfig
from envs.seeds import stream, task_seed

class RLTrainer:
    def __init__(self, cfg: TrainConfig, policy: Any, pool: Any, prompt: PromptBuilder,
                 ref_model: torch.nn.Module | None = None):
        self.cfg, self.policy, self.pool, self.prompt = cfg, policy, pool, prompt
        self.model: torch.nn.Module = policy.model
        self.pad_id = policy.tokenizer.pad_token_id
        self.ref_model = ref_model
        # The module the optimizer trains: the policy's own model in one process, a DDP wrapper
        # around it, or an FSDP-sharded copy that `sync_weights` gathers back (algos/distributed.py).
        # A VLM's vision tower sits idle on text-only rows, which DDP must be told about.
        self.train_model = dist.wrap_model(self.model, find_unused=bool(getattr(policy, "is_vlm", False)))
        self.params = [p for p in self.train_model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.rl.lr, weight_decay=cfg.rl.weight_decay)
        #: the estimator's options; a critic estimator's include critic_lr, value_clip, critic_warmup
        self.options = estimator_options(cfg)
        self.critic = self.critic_optimizer = None
        if cfg.algo.estimator().critic:
            from algos.critic import Critic

            self.critic = Critic(self.model, self.pad_id)
            self.critic_optimizer = torch.optim.AdamW([p for p in self.critic.parameters() if p.requires_grad],
                                                      lr=self.options.critic_lr)
        #: EPO's entropy history (§6.1): per iteration, the mean token entropy of each turn index
        self.entropy_history: list[dict[int, float]] = []
        #: (iteration, task seeds) of every collection, in the order played (seeds.json's "train")
        self.played: list[tuple[int, list[int]]] = []
        #: the last iteration's trajectories and what the estimator computed for them, kept until
        #: the next one so the loop can save them (algos/saved_rollouts.py) without recomputing
        self.last_batch: tuple[list[Trajectory], ScoredBatch] | None = None

    @property
    def group_size(self) -> int:
        return rollouts_per_task(self.cfg)

    # -- state beyond the policy's weights (checkpointed) --------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"optimizer": dist.optimizer_state(self.train_model, self.optimizer),
                                 "entropy_history": self.entropy_history}
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dist.load_replica_into(self.train_model, self.model)  # FSDP: the restored weights into the shards
        dist.load_optimizer_state(self.train_model, self.optimizer, state["optimizer"])
        self.entropy_history = [{int(k): v for k, v in h.items()} for h in state.get("entropy_history", [])]
        if self.critic is not None:
            if "critic" not in state:
                raise RuntimeError("the checkpoint has no critic; it was not saved by a run whose estimator trains a critic")
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])

    # -- rollout ---------------------------------------------------------------------------------
    def task_seeds(self, iteration: int, round_: int = 0) -> list[int]:
        """The iteration's training tasks (envs.seeds: a range SFT and evaluation never use)."""
        return [task_seed(self.cfg.seed, "train_tasks", iteration, round_, k) for k in range(self.cfg.rl.tasks_per_iter)]

    def collect(self, iteration: int, round_: int = 0) -> Rollout:
        rl = self.cfg.rl
        seed = stream(self.cfg.seed, "train_sampling", iteration, round_, dist.context().rank)
        sampling = SamplingParams(temperature=rl.temperature, top_p=rl.top_p, max_new_tokens=rl.max_new_tokens,
                                  seed=seed)
        self.model.eval()
        kwargs = {"probe_ground_truth": True} if self.cfg.algo.estimator().probe else {}
        kwargs["mode"] = "async" if rl.async_rollout else "sync"
        kwargs["keep_pixel_inputs"] = True  # the update feeds them back: images are processed once
        first_group = (iteration * rl.max_sampling_rounds + round_) * rl.tasks_per_iter
        tasks = self.task_seeds(iteration, round_)
        self.played.append((iteration, tasks))
        return collect_groups(self.pool, self.policy, tasks, self.group_size, sampling,
                              self.prompt, first_group_id=first_group, **kwargs)

    def collect_batch(self, iteration: int) -> tuple[list[Trajectory], dict[str, float]]:
        """The iteration's trajectories and rollout metrics, with DAPO's dynamic sampling if enabled.

        Dynamic sampling (algorithms.md §11.1) keeps only task groups whose returns differ, collects
        fresh tasks until `tasks_per_iter` such groups are in or `max_sampling_rounds` rounds are
        spent, and keeps the first `tasks_per_iter` groups. The rollout metrics are those of the
        first round: the policy's success on a plain sample of tasks.
        """
        rl = self.cfg.rl
        first = self.collect(iteration)
        metrics = dict(first.metrics)
        if not rl.dynamic_sampling:
            return first.trajectories, metrics
        kept = informative_groups(first.trajectories)
        dropped_first = rl.tasks_per_iter - len(kept)
        rounds = 1
        while len(kept) < rl.tasks_per_iter and rounds < rl.max_sampling_rounds:
            kept += informative_groups(self.collect(iteration, rounds).trajectories)
            rounds += 1
        metrics.update({"dynamic_rounds": float(rounds), "dynamic_groups": float(min(len(kept), rl.tasks_per_iter)),
                        "dynamic_dropped_first_round": float(dropped_first)})
        return [t for group in kept[: rl.tasks_per_iter] for t in group], metrics

    # -- critic ----------------------------------------------------------------------------------
    def critic_values(self, trajectories: list[Trajectory]) -> list[float]:
        """The critic's value of the prompt of each of `healthy_steps(trajectories)` (GAE's V(s_t)).
        VLM steps are valued with the images the policy saw. Each rank values the steps it played
        and the values are exchanged."""
        steps, ranks = healthy_steps(trajectories), step_ranks(trajectories)
        mine = [k for k in range(len(steps)) if ranks[k] == dist.context().rank]
        values = self.critic.values([steps[k].prompt_ids for k in mine], self.cfg.rl.micro_batch_size,
                                    pixel_inputs=[steps[k].pixel_inputs or {} for k in mine])
        out = [0.0] * len(steps)
        for share in dist.all_gather_objects(list(zip(mine, (float(v) for v in values)))):
            for k, v in share:
                out[k] = v
        return out

    def update_critic(self, rows: list[Row], iteration: int) -> dict[str, float]:
        cfg = self.cfg
        rng = random.Random(stream(cfg.seed, "critic_minibatches", iteration))
        sums: dict[str, float] = {}
        n = 0
        self.critic.train()
        for _ in range(cfg.rl.ppo_epochs):
            for mb in minibatches(rows, cfg.rl.minibatch_size, rng):
                self.critic_optimizer.zero_grad(set_to_none=True)
                for micro in micro_batches([r for r in mb if r.local], cfg.rl.micro_batch_size):
                    values = self.critic([r.prompt_ids for r in micro], **pixel_kwargs(micro))
                    old = torch.tensor([r.value for r in micro], dtype=values.dtype)
                    returns = torch.tensor([r.columns["return"] for r in micro], dtype=values.dtype)
                    loss, stats = value_loss(values, old, returns, clip=self.options.value_clip or None)
                    (loss * len(micro) / len(mb)).backward()
                    for k, v in {"value_loss": float(loss.detach()), **stats}.items():
                        sums[k] = sums.get(k, 0.0) + v * len(micro) / len(mb)
                dist.sum_gradients(self.critic)  # the ranks' shares add up to the minibatch's gradient
                torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.rl.max_grad_norm)
                self.critic_optimizer.step()
                n += 1
        self.critic.eval()
        if dist.context().active:
            sums = dist.sum_dicts(sums)
        return {f"critic_{k}": v / max(n, 1) for k, v in sums.items()}

    # -- update ----------------------------------------------------------------------------------
    def _forward(self, model: torch.nn.Module, rows: list[Row], return_entropy: bool = False):
        prompts, responses = [r.prompt_ids for r in rows], [r.response_ids for r in rows]
        pixels = pixel_kwargs(rows)  # VLM rows: their images' pixel inputs, in row order
        # The shared-prefix path runs one or two model calls depending on the rows; FSDP's sharded
        # forwards are collectives, so every rank must make the same number: one plain call.
        fsdp_training = model is self.train_model and dist.context().mode == "fsdp" and dist.context().active
        if self.cfg.rl.shared_prefix and not fsdp_training:
            from algos.prefix_forward import shared_prefix_logprobs

            return shared_prefix_logprobs(model, prompts, responses, pad_id=self.pad_id, return_entropy=return_entropy,
                                          **pixels)
        return sequence_logprobs(model, prompts, responses, pad_id=self.pad_id, return_entropy=return_entropy,
                                 **pixels)

    @torch.no_grad()
    def attach_logprobs(self, rows: list[Row]) -> dict[int, float]:
        """Old (and reference) logprobs for the PPO ratio (and the KL term).

        verl recomputes old logprobs because its sampler (vLLM) differs numerically from the
        trainer; so do we by default. The hf backend samples with the trainer's own weights and its
        logprobs match a recomputation to ~1e-6 (tests/test_hf.py), so `rl.recompute_old_logprobs=false`
        may reuse them and skip a forward pass. With EPO on, the same pass measures the rollout
        policy's token entropy per turn index; returns that {turn: mean entropy} (else {}).
        A distributed run scores the rows each rank played (the ones it trains) and sums the entropies.
        """
        need_old = self.cfg.rl.recompute_old_logprobs
        need_ref = self.ref_model is not None and self.cfg.loss.kl_coef > 0
        need_entropy = self.cfg.loss.epo.enabled
        mine = [r for r in rows if r.local]
        if not need_old:
            for r in mine:
                r.old_logprobs = torch.tensor(r.rollout_logprobs, dtype=torch.float32)
        ent_sum: dict[int, float] = {}
        ent_n: dict[int, float] = {}
        if not (need_old or need_ref or need_entropy):
            return {}
        for mb in micro_batches(mine, self.cfg.rl.micro_batch_size, self.cfg.rl.max_tokens_per_micro_batch):
            logp = entropy = ref = None
            if need_old or need_entropy:
                logp, mask, entropy = self._forward(self.model, mb, return_entropy=need_entropy)
            if need_ref:
                ref = self._forward(self.ref_model, mb)[0]
            for k, r in enumerate(mb):
                n = len(r.response_ids)
                if need_old:
                    r.old_logprobs = logp[k, :n].clone()
                if ref is not None:
                    r.ref_logprobs = ref[k, :n].clone()
                if entropy is not None:
                    ent_sum[r.turn] = ent_sum.get(r.turn, 0.0) + float(entropy[k, :n].sum())
                    ent_n[r.turn] = ent_n.get(r.turn, 0.0) + n
        if dist.context().active and need_entropy:
            ent_sum, ent_n = (dist.sum_dicts(d) for d in (ent_sum, ent_n))
        return {t: ent_sum[t] / max(ent_n[t], 1.0) for t in ent_sum}

    def reference_entropy(self, turn: int) -> float:
        """EPO's H̄_t: the mean over all iterations so far of turn t's rollout entropy."""
        seen = [h[turn] for h in self.entropy_history if turn in h]
        if not seen:  # a turn index never reached before: the nearest earlier turn's history
            earlier = [t for h in self.entropy_history for t in h if t < turn]
            return self.reference_entropy(max(earlier)) if earlier else 1.0
        return sum(seen) / len(seen)

    def update(self, rows: list[Row], iteration: int) -> dict[str, float]:
        cfg, loss_cfg = self.cfg.rl, self.cfg.loss
        if hasattr(self.policy, "sleep"):  # a vLLM engine frees its GPU memory for the update
            self.policy.sleep()
        self.train_model.train()
        rng = random.Random(stream(self.cfg.seed, "minibatches", iteration))
        filler = next((r for r in rows if r.local), rows[0])  # see _local_micro_batches
        sums: dict[str, float] = {}
        n_steps = 0
        phase = 1.0
        if loss_cfg.epo.enabled and loss_cfg.epo.phase_weights:
            phase = epo_phase_weight(iteration, max(cfg.iterations, 1))
        for _ in range(cfg.ppo_epochs):
            for mb in minibatches(rows, cfg.minibatch_size, rng, by_prompt=cfg.shared_prefix):
                stats = self._minibatch_step(mb, loss_cfg, filler, phase)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_steps += 1
        self.train_model.eval()
        self.sync_weights()
        out = {k: v / max(n_steps, 1) for k, v in sums.items()}
        if loss_cfg.epo.enabled:
            out["epo_phase_weight"] = phase
        return out

    def sync_weights(self) -> None:
        """Make the weights the rollout generates with equal the trained ones: FSDP gathers its shards
        into the rollout's module (DDP and one process train that module itself), and a vLLM engine
        loads them in place."""
        dist.sync_replica(self.train_model, self.model)
        if hasattr(self.policy, "load_weights_from"):
            self.policy.load_weights_from(self.model)

    def _local_micro_batches(self, mb: list[Row], filler: Row) -> list[tuple[list[Row], bool]]:
        """This rank's micro-batches of the minibatch (the rows it played), as (rows, real); `real`
        False marks a zero-weight one on `filler` (a row this rank played) that keeps the ranks'
        collective counts equal."""
        size, budget = self.cfg.rl.micro_batch_size, self.cfg.rl.max_tokens_per_micro_batch
        if not dist.context().active:
            return [(m, True) for m in micro_batches(mb, size, budget)]
        micros = [(m, True) for m in micro_batches([r for r in mb if r.local], size, budget)]
        count = max(dist.all_gather_objects(len(micros)))
        return micros + [([filler], False)] * (count - len(micros))

    def _minibatch_step(self, mb: list[Row], loss_cfg: Any, filler: Row, phase: float = 1.0) -> dict[str, float]:
        # GSPO and SAPO aggregate seq-mean-token-mean whatever loss.agg says (algorithms.md B.8);
        # the entropy and KL terms follow the same aggregation so one micro-batch weight fits all
        agg = policy_loss_agg(loss_cfg.name, loss_cfg.agg)
        token_level = agg == "token-mean"
        total_tokens = sum(len(r.response_ids) for r in mb)  # of the global minibatch, on every rank
        epo = loss_cfg.epo
        world = dist.context().world
        self.optimizer.zero_grad(set_to_none=True)
        acc: dict[str, float] = {}
        local = self._local_micro_batches(mb, filler)
        for i, (micro, real) in enumerate(local):
            # DDP: only the last backward of the minibatch all-reduces (every rank runs as many)
            no_sync = getattr(self.train_model, "no_sync", None) if i < len(local) - 1 else None
            with no_sync() if no_sync is not None else _null():
                logp, mask, entropy = self._forward(self.train_model, micro, return_entropy=True)
                loss, stats = self._micro_loss(micro, logp, mask, entropy, loss_cfg, agg, epo, phase)
                # Weight micro-batches so the accumulated gradient equals the global minibatch aggregate;
                # times the world size because DDP/FSDP average the ranks' gradients.
                weight = (float(mask.sum()) / total_tokens) if token_level else len(micro) / len(mb)
                weight = weight if real else 0.0
                (loss * (weight * world)).backward()
            for k, v in stats.items():
                acc[k] = acc.get(k, 0.0) + weight * v
        if world > 1:
            acc = dist.sum_dicts(acc)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.rl.max_grad_norm)
        self.optimizer.step()
        acc["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        return acc

    def _micro_loss(self, micro: list[Row], logp: torch.Tensor, mask: torch.Tensor, entropy: torch.Tensor,
                    loss_cfg: Any, agg: str, epo: Any, phase: float) -> tuple[torch.Tensor, dict[str, float]]:
        old = _pad([r.old_logprobs for r in micro], logp.shape[1])
        adv = torch.tensor([r.advantage for r in micro], dtype=logp.dtype)
        clip_low: float | torch.Tensor = loss_cfg.clip_low
        clip_high: float | torch.Tensor = loss_cfg.clip_high
        if "clip" in micro[0].columns:  # A2TGPO's per-turn clip range (§5.2), symmetric
            clip_low = clip_high = torch.tensor([r.columns["clip"] for r in micro], dtype=logp.dtype)
        loss, stats = policy_loss(loss_cfg.name, logp, old, adv, mask, clip_low=clip_low, clip_high=clip_high,
                                  clip_ratio_c=loss_cfg.clip_ratio_c, agg=loss_cfg.agg,
                                  tau_pos=loss_cfg.tau_pos, tau_neg=loss_cfg.tau_neg)
        ent = agg_loss(entropy, mask, agg)
        if epo.enabled:
            ref_ent = torch.tensor([self.reference_entropy(r.turn) for r in micro], dtype=logp.dtype)
            term, epo_stats = epo_regularizer(
                entropy, ref_ent, mask, agg, entropy_coef=loss_cfg.entropy_coef,
                smooth_coef=epo.smooth_coef, phase_weight=phase, kappa_lo=epo.kappa_lo, kappa_hi=epo.kappa_hi,
                penalty=epo.penalty, mode=epo.mode, faithful=epo.faithful)
            loss = loss + term
            stats.update(epo_stats)
        elif loss_cfg.entropy_coef:
            loss = loss - loss_cfg.entropy_coef * ent
        if loss_cfg.kl_coef and micro[0].ref_logprobs is not None:
            kl = agg_loss(low_var_kl(logp, _pad([r.ref_logprobs for r in micro], logp.shape[1])), mask, agg)
            loss = loss + loss_cfg.kl_coef * kl
            stats["kl"] = kl.detach()
        stats = {**{k: float(v) for k, v in stats.items()}, "loss": float(loss.detach()),
                 "entropy": float(ent.detach())}
        return loss, stats

    # -- one iteration ---------------------------------------------------------------------------
    def iteration(self, iteration: int) -> dict[str, float]:
        t0 = time.perf_counter()
        trajectories, rollout_metrics = self.collect_batch(iteration)
        t1 = time.perf_counter()
        with training_memory():  # freed activations leave the process (algos/memory.py)
            values = self.critic_values(trajectories) if self.critic is not None else None
            scored = score_batch(trajectories, self.cfg, values)
            self.last_batch = (trajectories, scored)
            rows, adv_stats = rows_from_scored(scored, self.cfg, dist.context().rank)
            turn_entropy = self.attach_logprobs(rows)
            if turn_entropy:
                self.entropy_history.append(turn_entropy)
            t2 = time.perf_counter()
            upd: dict[str, float] = {}
            if self.critic is not None and rows:
                upd.update(self.update_critic(rows, iteration))
            warming = self.critic is not None and iteration < self.options.critic_warmup
            if rows and not warming:
                upd.update(self.update(rows, iteration))
        t3 = time.perf_counter()
        tokens = sum(r.length for r in rows)
        m = {f"rollout/{k}": v for k, v in rollout_metrics.items()}
        m.update(adv_stats)  # adv/..., batch/..., group/... and the estimator's own diagnostics
        m.update({f"train/{k}": v for k, v in upd.items()})
        m.update({"time/rollout": t1 - t0, "time/prepare": t2 - t1, "time/update": t3 - t2,
                  "train/rows": float(len(rows)), "train/tokens": float(tokens),
                  "train/tokens_per_s": tokens / max(t3 - t1, 1e-9)})
        return m


def _pad(tensors: list[torch.Tensor | None], width: int) -> torch.Tensor:
    out = torch.zeros(len(tensors), width)
    for k, t in enumerate(tensors):
        if t is not None:
            out[k, : t.shape[0]] = t
    return out
