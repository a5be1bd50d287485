"""`groupwise train`: SFT warm start, then group RL, with evaluation, checkpoints and metrics.

    groupwise train                                   # tiny model on Sokoban, SFT then GiGPO
    groupwise train algo.name=grpo rl.iterations=50   # dotted overrides of algos/train_config.py
    groupwise train --config run.yaml --resume        # continue from the last checkpoint
    groupwise train --resume out_dir=runs/x rl.iterations=40   # ... and run it for longer
    groupwise train --model /path/to/hf-model         # any local causal LM or Qwen2-VL folder (LoRA by default)
    groupwise train --model model.gguf                # a .gguf file, or a folder holding one (model.gguf_file
                                                      # names it when the folder holds several)
    groupwise train --model base.gguf model.chat_template=chatml   # a base model without a chat template
    groupwise train "env.kwargs={obs_mode: image}"    # image observations: a tiny Qwen2-VL is built
    groupwise train --plugin my_estimator.py algo.name=mine   # import a file (or module) that registers
                                                      # an estimator or env first; repeatable

Several processes (DDP, or FSDP with distributed.mode=fsdp; gloo on CPU, NCCL on GPUs):

    torchrun --nproc_per_node 2 -m algos.cli train distributed.mode=ddp

VLM options: model.vlm (auto | on | off; auto builds the tiny VLM when model.path is empty and the
env's observations carry images), model.freeze_vision (False: the vision tower trains too),
env.image_history (1: the prompt carries the current frame only).
"""

from __future__ import annotations

import copy
import json
import random
import resource
import signal
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from algos import distributed as dist
from algos.checkpoint import (CheckpointError, load_latest, restore_rng_state, save_checkpoint,
                              write_json_atomic)
from algos.config import (ConfigError, apply_overrides, build_config, cli_parser, field_docs, from_dict, parse_args,
                          save_yaml, show_value, to_dict)
from algos.logger import MetricsLogger, NullLogger, plot_curves, read_jsonl
from algos.collection import gather_chats
from algos.saved_rollouts import read_rollouts, rollouts_due, save_rollouts
from algos.task_sets import SeedsFile, eval_env_options, sft_task_seeds
from algos.policy_setup import (image_history, load_policy_on_every_rank, load_weights, uses_compact_prompt,
                                vllm_rollout_policy)
from algos.train_checks import check_config, check_model
from algos.train_config import TrainConfig
from envs.seeds import stream


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser("groupwise train", __doc__)
    parser.add_argument("--resume", action="store_true", help="continue the run in out_dir from its last checkpoint")
    parser.add_argument("--model", metavar="PATH", help="a model folder, a .gguf file or a folder holding one "
                        "(= model.path=PATH); left out: the tiny model groupwise builds")
    parser.add_argument("--out", metavar="DIR", help="the run folder (= out_dir=DIR)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a .py file or module that registers an estimator or env first; repeatable")
    try:
        args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
        for plugin in args.plugin:  # before the config is read: a plugin's estimator adds its algo.<name> section
            load_plugin(plugin)
        if args.help:
            print(parser.format_help())
            print("Options (key=default, then what it does):")
            for line in option_lines(TrainConfig()):
                print("  " + line)
            return 0
        if args.model is not None and not args.model.strip():  # e.g. a `$(python -c ...)` that failed
            raise ConfigError("--model got an empty path; pass a model folder, a .gguf file or a folder holding one "
                              "(such as a pip package's), or leave --model out to train the tiny model")
        overrides = list(args.overrides)
        if args.model:
            overrides.append(f"model.path={args.model}")
        if args.out:
            overrides.append(f"out_dir={args.out}")
        cfg = build_config(TrainConfig, args.config, overrides)
        # a resumed run takes some of the overrides (RESUME_KEYS)
        summary = train(cfg, resume=args.resume, overrides=overrides)
    except ConfigError as exc:  # bad input or a combination that cannot work, found before any training
        print(f"groupwise train: {exc}", file=sys.stderr)
        return 2
    return 130 if summary.get("interrupted") else 0


def load_plugin(name: str) -> None:
    """Import a user's file (`my_estimator.py`) or module (`my_package.estimators`), so what it
    registers (estimators, envs) exists before the config is read: its `algo.<name>` section too."""
    import importlib
    import importlib.util
    from pathlib import Path

    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--plugin {name}: no such file; pass a .py file that registers an estimator or env, "
                              f"or an importable module name")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # so its dataclasses and pickles resolve
        spec.loader.exec_module(module)
        return
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--plugin {name}: {exc}; pass a .py file or a module on the Python path") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy's legacy seeding takes 32 bits
    torch.manual_seed(seed)


def _say(*args: Any) -> None:
    """print on rank 0 only (every rank of a distributed run would say the same)."""
    if dist.is_main():
        print(*args)


def train(cfg: TrainConfig, resume: bool = False, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or continue) a training run; returns the summary that is also written to summary.json.

    A resumed run keeps the config in its checkpoint; of the command-line `overrides`, those in
    RESUME_KEYS (how long it runs, how it evaluates and logs) apply to it, and others are refused.

    Under torchrun (WORLD_SIZE > 1) the run is distributed (algos/distributed.py); otherwise
    torch.distributed is never touched.
    """
    started = not dist.context().active and dist.launched_by_torchrun()
    if started:
        try:
            dist.setup(cfg.distributed.mode, cfg.distributed.backend, cfg.distributed.timeout_minutes)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    try:
        summary = _train(cfg, resume, overrides)
        if started:  # no rank closes its connections while a peer's last collective is in flight
            dist.barrier()
        return summary
    finally:
        if started:
            dist.teardown()


def _train(cfg: TrainConfig, resume: bool, overrides: Sequence[str] = ()) -> dict[str, Any]:
    from agents.prompts import PromptBuilder
    from envs import make_pool

    out = Path(cfg.out_dir).expanduser()
    ckpt_dir = out / "checkpoints"
    check_config(cfg)
    try:  # a damaged newest checkpoint falls back to the newest intact one (with a warning)
        state = load_latest(ckpt_dir) if resume else None
    except CheckpointError as exc:  # none is intact: say which files are damaged
        raise ConfigError(f"--resume: {exc}") from None
    if resume and state is None:
        _say(f"no checkpoint in {ckpt_dir}; starting a new run")
    if state is not None:
        cfg = resumed_config(state["config"], cfg, overrides)
        check_config(cfg)
    check_model(cfg)
    ctx = dist.context()
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
    dist.barrier()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(stream(cfg.seed, "torch"))

    compact = uses_compact_prompt(cfg)
    prompt = PromptBuilder.for_env(cfg.env.id, compact=compact, history_length=cfg.env.history_length,
                                   image_history=image_history(cfg))
    from algos.advantage_rows import rollouts_per_task

    # each rank plays its share of the task groups and of the evaluation rooms
    share = lambda n: -(-n // ctx.world)  # noqa: E731
    eval_size = max(share(min(cfg.eval.episodes * cfg.eval.samples_per_task, 128)), cfg.eval.samples_per_task)
    eval_apart = eval_env_options(cfg) != cfg.env.options()  # evaluation on its own split, in its own pool
    pool_size = max(share(cfg.rl.tasks_per_iter) * rollouts_per_task(cfg), 0 if eval_apart else eval_size, 1)
    t_start = time.perf_counter()
    extra = {"address": cfg.env.ray_address} if cfg.env.pool == "ray" else {}
    seeds_file = SeedsFile(cfg, out)
    with ExitStack() as stack:
        pool = stack.enter_context(make_pool(cfg.env.pool, cfg.env.id, num_envs=pool_size, num_workers=cfg.env.workers,
                                             env_kwargs=cfg.env.options(), **extra))
        eval_pool = pool if not eval_apart else stack.enter_context(
            make_pool(cfg.env.pool, cfg.env.id, num_envs=eval_size, num_workers=cfg.env.workers,
                      env_kwargs=eval_env_options(cfg), **extra))
        policy = load_policy_on_every_rank(cfg, out, compact)
        ref_model = copy.deepcopy(policy.model).eval() if cfg.loss.kl_coef > 0 else None
        if cfg.model.backend == "vllm":
            policy = vllm_rollout_policy(cfg, policy, out)
        from algos.rl import RLTrainer

        trainer = RLTrainer(cfg, policy, pool, prompt, ref_model)
        logger: Any = MetricsLogger(out, use_tensorboard=cfg.tensorboard,
                                    resume_step=state["iteration"] if state else None) if dist.is_main() else NullLogger()
        tracker = None
        if cfg.logger.wandb and dist.is_main():
            from algos.tracking import Loggers, WandbTracker

            tracker = WandbTracker(cfg.logger, out, to_dict(cfg), resuming=state is not None)
            logger = Loggers(logger, tracker)
        history: dict[str, Any] = {"eval": [], "eval_tasks": {}}
        start = 0
        if state is not None:
            start = _restore(state, policy.model, trainer, history)
            trainer.sync_weights()  # the rollout engine (vllm) generates with the restored weights
            seeds_file.resume(start)
            _say(f"resumed from iteration {start} ({ckpt_dir})")
        if dist.is_main():
            seeds_file.write()
        if state is None:
            if cfg.sft.enabled:
                _warm_start(cfg, policy, pool, prompt, logger, trainer)  # ends with trainer.sync_weights()
            ev = _evaluate(policy, eval_pool, prompt, cfg, history, 0)
            logger.log(0, {f"eval/{k}": v for k, v in ev.items()})
            _say(f"evaluation before RL: success {ev['success']:.3f} on {cfg.eval.episodes} tasks")
            _save(ckpt_dir, cfg, 0, policy.model, trainer, history)

        interrupted = _run_iterations(cfg, trainer, policy, eval_pool, prompt, logger, history, start, ckpt_dir,
                                      seeds_file, tracker)
        if tracker is not None:
            rollout = [(r["iteration"], r["rollout/success"]) for r in read_jsonl(out / "metrics.jsonl")
                       if r.get("rollout/success") is not None]
            tracker.log_curves(history["eval"], rollout)
        logger.close()
    return _finish(cfg, out, policy, history, interrupted, time.perf_counter() - t_start)


#: Keys a resumed run takes from the command line: they change how long it runs and what it
#: reports, not what it learns from, so the checkpoint stays valid.
RESUME_KEYS = ("rl.iterations", "eval.every", "eval.episodes", "save_every", "keep_checkpoints",
               "tensorboard", "progress", "threads", "env.workers", "save_rollouts_every", "logger.wandb",
               "logger.wandb_project", "logger.wandb_entity", "logger.wandb_run_name", "logger.wandb_mode")


def resumed_config(saved: dict[str, Any], given: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """The checkpoint's config, with the RESUME_KEYS given on the command line, today's out_dir and launch."""
    cfg = from_dict(TrainConfig, saved)
    saved_d, given_d = to_dict(cfg), to_dict(given)
    keys = {o.partition("=")[0].strip() for o in overrides} - {"out_dir"}
    differ = {k for k in keys if _lookup(saved_d, k) != _lookup(given_d, k)}
    refused = sorted(k for k in differ if k not in RESUME_KEYS and not k.startswith("distributed"))
    if refused:
        raise ConfigError(
            f"--resume continues a run with the config in its checkpoint; {', '.join(refused)} cannot change "
            f"(only {', '.join(RESUME_KEYS)} can). Start a new run in another out_dir to change them.")
    changes = [f"{k}={_lookup(given_d, k)}" for k in sorted(differ & set(RESUME_KEYS))]
    if changes:
        cfg = apply_overrides(cfg, changes)
        _say(f"resuming with {' '.join(changes)}")
    # where the run lives and how it is launched are today's choice (a run folder may have moved)
    cfg.out_dir, cfg.distributed = given.out_dir, given.distributed
    return cfg


def _lookup(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def option_lines(cfg: Any, prefix: str = "") -> list[str]:
    """`key=default` for every leaf field of `cfg`, each followed by its doc wrapped and indented
    (algos.config.field_docs: help metadata, as the estimators' options carry, or the `#:`
    comments of algos/train_config.py)."""
    import dataclasses

    out, docs = [], field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            out += option_lines(value, key + ".")
            continue
        out.append(f"{key}={show_value(value)}")
        if f.name in docs:
            out += textwrap.wrap(docs[f.name], 96, initial_indent="    ", subsequent_indent="    ",
                                 break_on_hyphens=False)
    return out


def _evaluate(policy: Any, eval_pool: Any, prompt: Any, cfg: TrainConfig, history: dict[str, Any],
              iteration: int) -> dict[str, float]:
    """Evaluate; keep the metrics and every task's outcome in the run's history."""
    from algos.evaluate import evaluate

    ev, outcomes = evaluate(policy, eval_pool, prompt, cfg, progress=cfg.progress)
    history["eval"].append({"iteration": iteration, **ev})
    history.setdefault("eval_tasks", {})[str(iteration)] = outcomes
    return ev


def _run_iterations(cfg: TrainConfig, trainer: Any, policy: Any, eval_pool: Any, prompt: Any, logger: MetricsLogger,
                    history: dict[str, Any], start: int, ckpt_dir: Path, seeds_file: SeedsFile,
                    tracker: Any = None) -> bool:
    """The RL loop; Ctrl-C (or SIGTERM) saves a checkpoint and returns True."""
    from tqdm.auto import tqdm

    stop = {"now": False}

    def on_interrupt(*_: Any) -> None:
        # Ctrl-C interrupts at once; the flag also stops the loop at the next iteration boundary
        # in case the KeyboardInterrupt lands in a finaliser (which Python reports and swallows).
        stop["now"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    previous_int = signal.signal(signal.SIGINT, on_interrupt)
    completed = start
    bar = tqdm(total=cfg.rl.iterations, initial=start, desc=f"{cfg.algo.estimator().name} on {cfg.env.id}",
               disable=not cfg.progress or not dist.is_main())
    try:
        for it in range(start, cfg.rl.iterations):
            metrics = trainer.iteration(it)
            done = it + 1
            seeds_file.add_train(trainer.played)
            if dist.is_main():
                seeds_file.write()
            for key, metric in (("tokens_generated", "rollout/tokens_generated"), ("tokens_trained", "train/tokens")):
                history[key] = history.get(key, 0.0) + metrics.get(metric, 0.0)
            if rollouts_due(cfg, done) and trainer.last_batch is not None:
                gather_chats(trainer.last_batch[0])  # every rank sends rank 0 the chats it played
                if dist.is_main():
                    t_save = time.perf_counter()
                    path = save_rollouts(ckpt_dir.parent, done, *trainer.last_batch, cfg)
                    metrics["time/save_rollouts"] = time.perf_counter() - t_save
                    if tracker is not None:
                        tracker.log_samples(done, read_rollouts(path))
            trainer.last_batch = None  # not held through the evaluation and the next collection
            if done % cfg.eval.every == 0 or done == cfg.rl.iterations:
                ev = _evaluate(policy, eval_pool, prompt, cfg, history, done)
                metrics.update({f"eval/{k}": v for k, v in ev.items()})
            logger.log(done, metrics)
            bar.update(1)
            bar.set_postfix(success=f"{metrics['rollout/success']:.2f}",
                            eval=f"{history['eval'][-1]['success']:.2f}")
            if done % cfg.save_every == 0 or done == cfg.rl.iterations:
                _save(ckpt_dir, cfg, done, policy.model, trainer, history)
            completed = done
            if stop["now"]:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        done = completed  # an iteration cut short did not finish; resume repeats it
        if history.get("last_saved") != done:
            _save(ckpt_dir, cfg, done, policy.model, trainer, history)
        _say(f"\ninterrupted: saved iteration {done} to {ckpt_dir}; continue with --resume")
        return True
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    bar.close()
    return False


def _warm_start(cfg: TrainConfig, policy: Any, pool: Any, prompt: Any, logger: Any, trainer: Any) -> None:
    from algos.sft import collect_expert_steps, sft_rows, train_sft

    # Distributed: each rank plays a slice of the expert episodes; all ranks then train on all rows.
    lo, hi = dist.shard_range(cfg.sft.episodes)
    steps, data_stats = collect_expert_steps(pool, prompt, sft_task_seeds(cfg)[lo:hi], cfg.sft.noise,
                                             stream(cfg.seed, "sft_noise", dist.context().rank))
    if dist.context().active:
        parts = dist.all_gather_objects((steps, data_stats["sft_data_success"] * (hi - lo)))
        steps = [s for part, _ in parts for s in part]
        data_stats = {"sft_data_success": sum(w for _, w in parts) / max(cfg.sft.episodes, 1),
                      "sft_rows": float(len(steps))}
    rows = sft_rows(policy.tokenizer, steps, policy=policy)
    _say(f"sft: {len(rows)} expert rows from {cfg.sft.episodes} episodes "
          f"(noise {cfg.sft.noise}, expert data success {data_stats['sft_data_success']:.2f})")
    stats = train_sft(trainer.train_model, policy.tokenizer, rows, epochs=cfg.sft.epochs, lr=cfg.sft.lr,
                      batch_size=cfg.sft.batch_size, seed=stream(cfg.seed, "sft_shuffle"), progress=cfg.progress,
                      max_tokens_per_micro_batch=cfg.sft.max_tokens_per_micro_batch,
                      shared_prefix=cfg.rl.shared_prefix)
    trainer.sync_weights()  # FSDP: the rollout's copy takes the fitted weights
    logger.log(0, {f"sft/{k}": v for k, v in {**data_stats, **stats}.items()})


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def _save(ckpt_dir: Path, cfg: TrainConfig, iteration: int, model: torch.nn.Module, trainer: Any,
          history: dict[str, Any]) -> None:
    history["last_saved"] = iteration
    trainer_state = trainer.state_dict()  # every rank: under FSDP gathering the optimizer is a collective
    if dist.is_main():  # the ranks hold the same weights; one writer per directory
        save_checkpoint(ckpt_dir, {
            "iteration": iteration,
            "config": to_dict(cfg),
            "model": _trainable_state(model),
            "trainer": trainer_state,
            "history": json.loads(json.dumps(history)),
        }, keep_last=cfg.keep_checkpoints)
    dist.barrier()


def _restore(state: dict[str, Any], model: torch.nn.Module, trainer: Any, history: dict[str, Any]) -> int:
    load_weights(model, state["model"])
    trainer.load_state_dict(state["trainer"] if "trainer" in state else {"optimizer": state["optimizer"]})
    history.update(state.get("history") or {})
    if "rng" in state:
        restore_rng_state(state["rng"])
    return int(state["iteration"])


def _finish(cfg: TrainConfig, out: Path, policy: Any, history: dict[str, Any], interrupted: bool,
            seconds: float) -> dict[str, Any]:
    evals = history["eval"]
    summary = {
        "env": cfg.env.id, "algo": cfg.algo.estimator().name, "iterations": evals[-1]["iteration"] if evals else 0,
        "success_before_rl": evals[0]["success"] if evals else None,
        "success_after_rl": evals[-1]["success"] if evals else None,
        "best_success": max(e["success"] for e in evals[1:]) if len(evals) > 1 else None,
        "tokens_generated": history.get("tokens_generated", 0.0), "tokens_trained": history.get("tokens_trained", 0.0),
        "eval_episodes": cfg.eval.episodes, "seconds": round(seconds, 1), "interrupted": interrupted,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),  # this process's
        "eval_curve": evals,
        # every evaluation task's outcome, per evaluated iteration: what paired comparisons use
        "eval_tasks": history.get("eval_tasks", {}),
    }
    if dist.context().active:
        summary["processes"] = dist.context().world
    if not dist.is_main():  # rank 0 writes the summary, the final model and the plots
        return summary
    write_json_atomic(out / "summary.json", summary, indent=2)
    if not interrupted:
        final = out / "final-model"
        model = policy.model
        if hasattr(model, "merge_and_unload"):  # LoRA: save a plain model that any tool loads
            model = model.merge_and_unload()
        model.save_pretrained(final)
        (policy.processor or policy.tokenizer).save_pretrained(final)
        plot_curves(out / "metrics.jsonl", ["eval/success", "rollout/success"], out / "success.png",
                    title=f"{cfg.algo.estimator().name} on {cfg.env.id}")
        print(f"success on {cfg.eval.episodes} evaluation tasks: before RL {summary['success_before_rl']:.3f}"
              f" -> after RL {summary['success_after_rl']:.3f}  ({seconds / 60:.1f} min)")
        print(f"model: {final}   curves: {out / 'success.png'}   metrics: {out / 'metrics.jsonl'}")
    return summary
