"""The GPU recipes (benchmarks/configs/gpu-qwen2.5-1.5b-*.yaml): verl-agent's published GiGPO settings
for Qwen2.5-1.5B-Instruct on ALFWorld and WebShop.

Each file is checked against the published numbers and against what its own header documents, then
run through `algos.train.train` for one RL iteration on the CPU: a tiny Qwen2 model (the same
architecture family) on the hf backend, a tiny batch, and the env's cheap local variant (generated
ALFWorld games, a small generated WebShop catalog on its real local server). Every other key of the
file must reach the run's config.yaml unchanged.
"""

import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from algos.config import load_yaml, to_dict, valid_keys
from algos.train_config import TrainConfig

CONFIGS = Path(__file__).parent.parent / "benchmarks" / "configs"
RECIPES = {name: CONFIGS / f"gpu-qwen2.5-1.5b-{name}.yaml" for name in ("alfworld", "webshop")}

# langfengQ/verl-agent: examples/gigpo_trainer/run_{alfworld,webshop}.sh and the defaults of
# verl/trainer/config/ppo_trainer.yaml they keep, as groupwise keys.
SHARED = {
    "algo.name": "gigpo", "model.backend": "vllm", "model.lora": "off", "sft.enabled": False,
    "rl.tasks_per_iter": 16, "rl.group_size": 8, "rl.iterations": 150, "rl.lr": 1e-6, "rl.ppo_epochs": 1,
    "rl.weight_decay": 0.01, "rl.max_grad_norm": 1.0, "rl.temperature": 1.0, "rl.top_p": 1.0,
    "rl.max_new_tokens": 512, "rl.dynamic_sampling": False,
    "loss.name": "ppo", "loss.kl_coef": 0.01, "loss.clip_low": 0.2, "loss.clip_high": 0.2,
    "loss.clip_ratio_c": 3.0, "loss.agg": "token-mean", "loss.entropy_coef": 0.001,
    "algo.gigpo.gamma": 0.95, "algo.gigpo.step_advantage_w": 1.0, "algo.gigpo.invalid_penalty": 0.1,
    "algo.gigpo.episode_stats_over": "steps", "env.history_length": 2,
    "eval.temperature": 0.4, "eval.greedy": False, "eval.every": 5, "eval.samples_per_task": 1,
    "vllm.gpu_memory_utilization": 0.6, "vllm.dtype": "bfloat16", "env.kwargs.success_reward": 10.0, "seed": 0,
}
PUBLISHED = {
    "alfworld": {**SHARED, "env.id": "alfworld", "algo.gigpo.mode": "mean_std_norm", "env.kwargs.max_steps": 50,
                 "env.kwargs.source": "alfworld-data", "env.kwargs.task_types": [1, 2, 3, 4, 5, 6],
                 "rl.minibatch_size": 256, "rl.micro_batch_size": 32, "vllm.max_model_len": 2048 + 512,
                 "eval.episodes": 128, "eval.split": "eval_in"},
    "webshop": {**SHARED, "env.id": "webshop", "algo.gigpo.mode": "mean_norm", "env.kwargs.max_steps": 15,
                "env.kwargs.eval_goals": 500, "rl.minibatch_size": 64, "rl.micro_batch_size": 8,
                "vllm.max_model_len": 4096 + 512, "eval.episodes": 256, "eval.split": "eval"},
}

#: what the CPU run changes: the model, the backend, the budget, and the env's cheap local variant
CPU = ["model.backend=hf", "rl.iterations=1", "rl.tasks_per_iter=2", "rl.group_size=2", "rl.max_new_tokens=8",
       "eval.episodes=2", "env.workers=0", "tensorboard=false", "progress=false", "threads=1"]
CPU_ENV = {
    # generated games (no download); the expert must still win them within ALFWorld's 50 steps
    "alfworld": lambda kw, tmp: {**kw, "source": "generated", "max_steps": 2, "expert_max_steps": 50,
                                 "cache_dir": str(tmp / "alfworld-cache")},
    # a small generated catalog instead of WebShop's data files, served by the env's own local server
    "webshop": lambda kw, tmp: {**{k: v for k, v in kw.items() if k not in ("products_file", "instructions_file")},
                                "num_products": 100, "num_goals": 60, "eval_goals": 10, "max_steps": 2},
}


def flat(d, prefix=""):
    """Dotted keys of a nested dict (env.kwargs included: env.kwargs.max_steps)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def file_keys(path):
    """The dotted keys the file itself sets (not the defaults it leaves)."""
    return flat(yaml.safe_load(path.read_text()))


def same(value, text):
    """A config value equals a number or word written in a comment."""
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        return float(text) == float(value)
    return text == str(value)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_holds_the_published_numbers_its_header_documents(name):
    path = RECIPES[name]
    text = path.read_text()
    cfg = load_yaml(TrainConfig, path)  # every key valid, every value of its type
    values = flat(to_dict(cfg))
    for key, want in PUBLISHED[name].items():
        if isinstance(want, float):
            assert values[key] == pytest.approx(want), key
        else:
            assert values[key] == want, key
    assert Path(cfg.model.path).name == "Qwen2.5-1.5B-Instruct"
    assert cfg.model.lora == "off" and not cfg.sft.enabled  # verl-agent: full fine-tuning, RL from the instruct model

    # the header: where the numbers come from, what it needs, and the command that runs this very file
    header = "\n".join(line[1:] for line in text.splitlines() if line.startswith("#"))
    assert f"examples/gigpo_trainer/run_{name}.sh" in header and "langfengQ/verl-agent" in header
    assert "verl/trainer/config/ppo_trainer.yaml" in header and "no groupwise equivalent" in header
    assert "model.backend=vllm" in header and "Qwen/Qwen2.5-1.5B-Instruct" in header
    assert f"torchrun --nproc_per_node 2 -m algos.cli train --config benchmarks/configs/{path.name}" in header

    # every groupwise `key=value` the source section documents is the value the file sets
    sources = header.split("Where the numbers come from")[1].split("no groupwise equivalent")[0]
    keys = set(valid_keys(TrainConfig)) | {k for k in values if k.startswith("env.kwargs.")}
    documented = {(k, v) for k, v in re.findall(r"([a-z_]+(?:\.[a-z_]+)+)=([\w.+-]+)", sources) if k in keys}
    for key, written in documented:
        assert same(values[key], written), f"{path.name}: the header says {key}={written}, the file sets {values[key]!r}"
    assert {"rl.iterations", "rl.minibatch_size", "rl.micro_batch_size", "loss.kl_coef", "vllm.max_model_len",
            "eval.episodes", "eval.temperature", "model.lora"} <= {k for k, _ in documented}

    # the env options are the env's own keyword arguments
    from envs.registry import spec

    params = inspect.signature(spec(cfg.env.id).load()).parameters
    assert set(cfg.env.options()) <= set(params)


@pytest.fixture
def keep_torch_threads():
    """`threads=1` (much faster on a busy 2-core machine) sets torch's thread count for the process:
    give the next tests the count they had."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_trains_one_iteration_on_cpu_with_a_tiny_qwen2(name, tiny_model_dir, tmp_path, keep_torch_threads):
    from algos.config import apply_overrides
    from algos.train import train

    path = RECIPES[name]
    cfg = load_yaml(TrainConfig, path)
    file_env = cfg.env.options()
    env_kwargs = CPU_ENV[name](file_env, tmp_path)
    overrides = [f"model.path={tiny_model_dir}", f"out_dir={tmp_path / 'run'}", *CPU,
                 f"env.kwargs={json.dumps(env_kwargs)}"]
    cfg = apply_overrides(cfg, overrides)
    assert json.loads((Path(tiny_model_dir) / "config.json").read_text())["model_type"] == "qwen2"

    summary = train(cfg)
    assert summary["iterations"] == 1 and not summary.get("interrupted")
    assert 0.0 <= summary["success_after_rl"] <= 1.0

    # every key of the file reached the run unchanged, except those this test set
    ran = flat(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    changed = {o.partition("=")[0] for o in overrides if not o.startswith("env.kwargs=")}
    changed |= {f"env.kwargs.{k}" for k in set(file_env) | set(env_kwargs)
                if k not in env_kwargs or k not in file_env or env_kwargs[k] != file_env[k]}
    kept = {k: v for k, v in file_keys(path).items() if k not in changed}
    assert {"algo.name", "rl.minibatch_size", "rl.lr", "loss.kl_coef", "loss.clip_low", "loss.clip_high",
            "algo.gigpo.mode", "env.history_length", "eval.temperature", "vllm.max_model_len"} <= set(kept)
    for key, want in kept.items():
        assert ran[key] == want, f"{path.name}: {key} is {ran[key]!r} in the run, {want!r} in the file"
