"""What `groupwise train` and `groupwise bench` check before any work: the model path, the env and
its options, the estimator and what it needs (from the registry), the ranges and the task sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from algos.config import ConfigError, check_ranges
from algos.task_sets import check_task_sets
from algos.train_config import TrainConfig, setting


def check_model(cfg: TrainConfig) -> None:
    """Reject, before any work, a model.path / model.gguf_file / model.chat_template that cannot load.

    Nothing is loaded here (a tokenizer without a chat template is found by `load_policy`, which loads
    the tokenizer before the weights)."""
    from agents.model_files import ChatTemplateError, resolve_chat_template, resolve_model_path

    m = cfg.model
    try:
        resolve_chat_template(m.chat_template, option="model.chat_template=")
    except ChatTemplateError as exc:
        raise ConfigError(str(exc)) from None
    if m.dtype == "bfloat16" and (not m.path.strip() or m.lora == "off"):
        why, fix = (("the tiny model built here trains all its weights", "model.dtype=float32.") if not m.path.strip()
                    else ("with model.lora=off", "model.dtype=float32, or model.lora=on."))
        raise ConfigError(f"model.dtype=bfloat16 is for a loaded model trained with LoRA (its adapters stay float32); "
                          f"{why}, and AdamW steps on bfloat16 weights lose small updates. Use {fix}")
    if not m.path.strip():
        if m.gguf_file.strip():
            raise ConfigError(
                f"model.gguf_file={m.gguf_file} names a file in model.path, but model.path is empty (an empty "
                f"model.path builds the tiny model). Pass the folder that holds it: --model FOLDER "
                f"model.gguf_file={m.gguf_file}, or the file itself: --model FOLDER/{Path(m.gguf_file).name}")
        return
    try:
        resolve_model_path(m.path, m.gguf_file.strip() or None, gguf_option="model.gguf_file=")
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"model.path={m.path}: {exc}") from None


def check_config(cfg: TrainConfig) -> None:
    """Every check that needs no model and no env instance: value ranges (done when a config is
    built from user input; again for configs built in code), the env and its options, the
    estimator and its combination with the rest, and the task sets (envs/seeds.py)."""
    from algos.tracking import check_wandb

    check_ranges(cfg)
    check_env(cfg)
    check_algorithm(cfg)
    check_task_sets(cfg)
    check_wandb(cfg.logger)


def check_env(cfg: TrainConfig) -> None:
    """Reject, before any work, an unknown env.id, or env.kwargs the env's constructor does not take
    (read from its signature, as `envs.make` checks it; the env is not built)."""
    from envs.registry import UnknownEnvError, check_options

    try:
        check_options(cfg.env.id, cfg.env.options())
    except UnknownEnvError as exc:
        raise ConfigError(f"env.id={cfg.env.id}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env.kwargs: {exc}") from None


def check_algorithm(cfg: TrainConfig) -> None:
    """Reject, before any work, an estimator that does not exist or cannot work with this setup:
    what it needs is what it registered (algos/registry.py)."""
    from algos.registry import check_estimator

    try:
        spec = cfg.algo.estimator()
    except ValueError as exc:  # an unknown estimator
        raise ConfigError(f"algo.name: {exc}") from exc
    opt = getattr(cfg.algo, spec.name)
    try:
        check_estimator(spec.name, **vars(opt))
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    for key, path in spec.follows.items():
        mine, theirs = getattr(opt, key), setting(cfg, path)
        if mine is not None and mine != theirs:
            raise ConfigError(
                f"algo.{spec.name}.{key}={mine} must equal {path}={theirs}: {_help(spec, key)}. "
                f"Set algo.{spec.name}.{key}={theirs} (or leave it null to follow {path}), or {path}={mine}.")
    if cfg.rl.group_size < spec.min_group_size:
        raise ConfigError(f"{spec.name} needs rl.group_size >= {spec.min_group_size} "
                          f"(it collects {spec.extra_rollouts} more rollouts per task and leaves some out)")
    # value ranges (rl.max_sampling_rounds >= 1, ...) are the fields' own, checked as the config is built
    if spec.probe or spec.reward_components:
        info = _first_step_info(cfg)
        if spec.probe and "ground_truth" not in info:
            raise ConfigError(
                f"{spec.name} needs the ground-truth answer of each task (info['ground_truth']) for its information-gain "
                f"probe, and env {cfg.env.id!r} does not provide one. Use an estimator without a probe "
                f"(e.g. algo.name=gigpo or grpo) or an environment with a ground truth such as a QA task.")
        if spec.reward_components and not info.get("reward_components"):
            raise ConfigError(
                f"{spec.name} reads each named sub-reward, and env {cfg.env.id!r} reports none "
                f"(info['reward_components'] after a step). Use algo.name=grpo, or an env with named sub-rewards.")


def _help(spec: Any, key: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(spec.options) if f.name == key)


def _first_step_info(cfg: TrainConfig) -> dict[str, Any]:
    """The env's info after reset merged with its info after one (expert or first) action."""
    from envs import make

    env = make(cfg.env.id, **cfg.env.options())
    try:
        _, info = env.reset(seed=cfg.seed)
        try:
            action = env.expert_action()
        except (AttributeError, NotImplementedError):  # no solver: the first admissible action, or any
            action = (info.get("admissible_actions") or [""])[0]
        return {**info, **env.step(action)[4]}
    finally:
        env.close()
