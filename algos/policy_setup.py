"""The policy a run trains: the tiny model built here, a local model folder or .gguf (LoRA by
default), a training checkpoint, and the vllm rollout engine beside it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from algos import distributed as dist
from algos.checkpoint import load_checkpoint
from algos.config import ConfigError, from_dict
from algos.train_checks import check_model
from algos.train_config import TrainConfig


def uses_compact_prompt(cfg: TrainConfig) -> bool:
    """env.prompt=auto means compact for the tiny model trained here and full for a loaded model."""
    return cfg.env.prompt == "compact" or (cfg.env.prompt == "auto" and not cfg.model.path)


def image_history(cfg: TrainConfig) -> int:
    """env.image_history: past steps whose images the prompt carries, the current one included (default 1)."""
    value = int(cfg.env.image_history)
    if value < 0:
        raise ConfigError(f"env.image_history must be >= 0 (1 = the current frame only); got {value}")
    return value


def wants_vlm(cfg: TrainConfig) -> bool:
    """Whether to build the tiny VLM (model.path empty): model.vlm=on, or auto and the env shows images."""
    mode = str(cfg.model.vlm)
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"model.vlm must be auto, on or off; got {mode!r}")
    if mode != "auto":
        return mode == "on"
    return image_history(cfg) > 0 and env_shows_images(cfg)


def env_shows_images(cfg: TrainConfig) -> bool:
    """True when the env's first observation (seed cfg.seed) carries images."""
    from envs import make

    env = make(cfg.env.id, **cfg.env.options())
    try:
        obs, _ = env.reset(seed=cfg.seed)
        return bool(len(obs.get("images") or ()))
    finally:
        env.close()


def load_policy(cfg: TrainConfig, out: Path, compact_prompt: bool = False) -> Any:
    """The hf policy: a local model folder (with LoRA unless off), or the tiny model built here
    (the tiny Qwen2-VL when the env's observations carry images, see `wants_vlm`)."""
    from agents.hf import HFPolicy
    from agents.model_files import ChatTemplateError, UnsupportedModelError

    check_model(cfg)
    template = cfg.model.chat_template.strip() or None
    try:
        if cfg.model.path:
            policy = HFPolicy(cfg.model.path, gguf_file=cfg.model.gguf_file.strip() or None, chat_template=template,
                              dtype=cfg.model.dtype)
            use_lora = cfg.model.lora != "off"
        else:
            from agents.tiny import ensure_tiny_model, env_corpus

            texts = env_corpus(cfg.env.id, cfg.env.history_length, env_kwargs=cfg.env.options(),
                               compact=compact_prompt)
            if wants_vlm(cfg):
                from agents.vlm import ensure_tiny_vlm

                policy = HFPolicy(ensure_tiny_vlm(out / "base-model", texts), chat_template=template)
            else:
                policy = HFPolicy(ensure_tiny_model(out / "base-model", texts), chat_template=template)
            use_lora = cfg.model.lora == "on"
    except (ChatTemplateError, UnsupportedModelError) as exc:  # found with the tokenizer, before the weights load
        raise ConfigError(str(exc)) from None
    checkpointing = cfg.model.gradient_checkpointing
    if checkpointing == "on" or (checkpointing == "auto" and cfg.model.path):
        if hasattr(policy.model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            policy.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            policy.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if use_lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha, lora_dropout=cfg.model.lora_dropout,
                          target_modules="all-linear", task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft 0.21 reads transformers 5's deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            policy.model = get_peft_model(policy.model, lora)
    if cfg.model.freeze_vision:
        if not policy.is_vlm:
            raise ConfigError("model.freeze_vision is set but the policy is a text model (it has no vision tower)")
        from agents.vlm import freeze_vision_tower

        freeze_vision_tower(policy.model)
    return policy


def policy_from_checkpoint(path: str | Path, chat_template: str | None = None) -> Any:
    """The policy of a training checkpoint (`<out_dir>/checkpoints/ckpt-000032`): the run's model,
    built as the run built it, with the checkpoint's weights. For `groupwise eval --policy`.
    `chat_template` replaces the run's model.chat_template when given."""
    path = Path(path)
    state = load_checkpoint(path)
    cfg = from_dict(TrainConfig, state["config"])
    if chat_template:
        cfg.model.chat_template = chat_template
    policy = load_policy(cfg, path.parent.parent, uses_compact_prompt(cfg))  # the run folder holds a built tiny model
    load_weights(policy.model, state["model"])
    policy.model.eval()
    return policy


def vllm_rollout_policy(cfg: TrainConfig, policy: Any, out: Path) -> Any:
    """A vLLM engine that generates for the trainer's model (model.backend=vllm)."""
    from agents.vllm_backend import VLLMPolicy

    v = cfg.vllm
    try:
        return VLLMPolicy(policy, out / "vllm-engine-model", max_model_len=v.max_model_len, kv_cache_gb=v.kv_cache_gb,
                          gpu_memory_utilization=v.gpu_memory_utilization, sleep=v.sleep, dtype=v.dtype,
                          tensor_parallel_size=v.tensor_parallel_size, seed=cfg.seed)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"model.backend=vllm: {exc}") from exc


def load_policy_on_every_rank(cfg: TrainConfig, out: Path, compact: bool) -> Any:
    """`load_policy`, with rank 0 first (it may build the tiny model on disk, which the others then
    load), the model on this rank's device, and rank 0's weights everywhere (LoRA's random init)."""
    ctx = dist.context()
    policy = load_policy(cfg, out, compact) if dist.is_main() else None
    dist.barrier()
    if policy is None:
        policy = load_policy(cfg, out, compact)
    if ctx.device != "cpu":
        policy.model.to(ctx.device)
        policy.device = torch.device(ctx.device)
    dist.broadcast_module(policy.model)
    return policy


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """A checkpoint's weights (all of them, or the trainable ones only) into the run's model."""
    missing = model.load_state_dict(weights, strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"checkpoint does not match the model: unexpected keys {missing.unexpected_keys[:5]}")
