"""The vllm backend's checks, run by tests/test_vllm.py in an interpreter that has vLLM.

`python tests/vllm_checks.py WORKDIR OUT.json` builds the tiny model in WORKDIR, starts one engine
(starting vLLM costs ~20 s, so all checks share it), measures each property and writes the
measurements to OUT.json; the tests assert on them. Measurements, not verdicts: a failing test
shows the numbers.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch


def prompts_for(policy, n: int) -> list[list[int]]:
    from agents.policy import Request

    reqs = [Request(messages=[{"role": "user", "content": f"Room {i}: the box is left of the player. Move?"}])
            for i in range(n)]
    return policy.encode_prompts(reqs)


def max_diff(a, b) -> float:
    return max((abs(float(x) - float(y)) for xs, ys in zip(a, b) for x, y in zip(xs, ys)), default=0.0)


def perturb(model: torch.nn.Module, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def check_generation(hf, v) -> dict:
    from agents.policy import SamplingParams

    prompts = prompts_for(hf, 6)
    sp = SamplingParams(greedy=True, max_new_tokens=16)
    a, b = hf.generate_from_ids(prompts, sp), v.generate_from_ids(prompts, sp)
    out = {"greedy_ids_equal": [x.response_ids == y.response_ids for x, y in zip(a, b)],
           "greedy_text_equal": [x.text == y.text for x, y in zip(a, b)],
           "greedy_truncated": [[x.truncated, y.truncated] for x, y in zip(a, b)],
           "greedy_logprob_diff": max_diff([x.logprobs for x in a], [y.logprobs for y in b])}
    # a stop string from the middle of a greedy answer: both backends stop right after it
    text = next((x.text for x in a if len(x.text.strip()) >= 6), a[0].text)
    stop = text.strip()[2:5]
    sps = SamplingParams(greedy=True, max_new_tokens=16, stop=(stop,))
    a, b = hf.generate_from_ids(prompts, sps), v.generate_from_ids(prompts, sps)
    out.update(stop=stop, stop_ids_equal=[x.response_ids == y.response_ids for x, y in zip(a, b)],
               stop_texts=[[x.text, y.text] for x, y in zip(a, b)],
               stop_truncated=[[x.truncated, y.truncated] for x, y in zip(a, b)])
    # seeds: copies of one prompt draw different samples; the same seed draws the same ones again
    same = [prompts[0]] * 6
    s1 = v.generate_from_ids(same, SamplingParams(temperature=1.0, max_new_tokens=12, seed=7))
    s2 = v.generate_from_ids(same, SamplingParams(temperature=1.0, max_new_tokens=12, seed=7))
    s3 = v.generate_from_ids(same, SamplingParams(temperature=1.0, max_new_tokens=12, seed=8))
    recomputed = hf.logprobs([g.prompt_ids for g in s1], [g.response_ids for g in s1])
    out.update(seed_repeats=[x.response_ids == y.response_ids for x, y in zip(s1, s2)],
               distinct_in_group=len({tuple(g.response_ids) for g in s1}),
               other_seed_differs=any(x.response_ids != y.response_ids for x, y in zip(s1, s3)),
               sampled_logprob_diff=max_diff([g.logprobs for g in s1], [r.tolist() for r in recomputed]),
               sampled_lengths=[[len(g.response_ids), len(g.logprobs)] for g in s1])
    return out


def check_sync(hf, v) -> dict:
    """A fixed sequence scored by the engine and the trainer, before and after a weight change."""
    g = torch.Generator().manual_seed(0)
    prompts = prompts_for(hf, 4)
    vocab = hf.model.config.vocab_size
    responses = [torch.randint(0, vocab, (10,), generator=g).tolist() for _ in prompts]
    trainer = lambda: [t.tolist() for t in hf.logprobs(prompts, responses)]  # noqa: E731
    out = {"initial_diff": max_diff(v.sequence_logprobs(prompts, responses), trainer())}
    perturb(hf.model, 0.05, seed=1)
    out["stale_diff"] = max_diff(v.sequence_logprobs(prompts, responses), trainer())
    v.load_weights_from(hf.model)
    out["synced_diff"] = max_diff(v.sequence_logprobs(prompts, responses), trainer())
    return out


def check_lora(hf, v) -> dict:
    """LoRA adapters are folded into the engine's weights, and the trainer's base weights stay put."""
    from peft import LoraConfig, get_peft_model

    model = hf.model
    hf.model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in hf.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)
    base_before = {k: t.clone() for k, t in model.state_dict().items() if "lora_" not in k}
    prompts = prompts_for(hf, 3)
    responses = [[5, 9, 13, 17, 21, 25]] * 3
    trainer = [t.tolist() for t in hf.logprobs(prompts, responses)]
    out = {"stale_diff": max_diff(v.sequence_logprobs(prompts, responses), trainer)}
    v.load_weights_from(hf.model)
    out["synced_diff"] = max_diff(v.sequence_logprobs(prompts, responses), trainer)
    base_after = {k: t for k, t in model.state_dict().items() if "lora_" not in k}
    out["base_weights_unchanged"] = all(torch.equal(base_before[k], base_after[k]) for k in base_before
                                        if k in base_after)
    hf.model = hf.model.unload().requires_grad_(True)  # the plain model again (adapters dropped, peft froze it)
    v.load_weights_from(hf.model)
    return out


def check_trainer_iteration(hf, v) -> dict:
    """One RL iteration with vLLM rollouts: the update syncs the engine, which then scores a fixed
    sequence as the trained model does."""
    from agents.prompts import PromptBuilder
    from algos.config import apply_overrides
    from algos.rl import RLTrainer
    from algos.train_config import TrainConfig
    from envs.pool import EnvPool

    cfg = apply_overrides(TrainConfig(), ["algo.name=gigpo", "rl.tasks_per_iter=2", "rl.group_size=3",
                                          "rl.max_new_tokens=8", "rl.lr=0.01", "model.backend=vllm"])
    prompts = prompts_for(hf, 2)
    responses = [[7, 11, 13, 19, 23]] * 2
    before = [t.tolist() for t in hf.logprobs(prompts, responses)]
    with EnvPool("sokoban", num_envs=6, num_workers=0, env_kwargs={"max_steps": 3}) as pool:
        trainer = RLTrainer(cfg, v, pool, PromptBuilder.for_env("sokoban", compact=True))
        metrics = trainer.iteration(0)
    after = [t.tolist() for t in hf.logprobs(prompts, responses)]
    return {"rows": metrics["train/rows"], "episodes": metrics["rollout/episodes"],
            "weights_moved": max_diff(before, after),
            "synced_diff": max_diff(v.sequence_logprobs(prompts, responses), after)}


def check_cli(folder: Path, work: Path, v) -> dict:
    """`groupwise rollout --policy vllm:<folder>` plays episodes on a second engine, after the first
    is shut down (one process, one engine at a time)."""
    import gc

    from algos.cli import main as cli

    v.close()
    del v
    gc.collect()
    out = work / "rollout.jsonl"
    try:
        code = cli(["rollout", "--env", "sokoban", "--policy", f"vllm:{folder}", "--episodes", "4", "--workers", "0",
                    "--max-new-tokens", "8", "--env-kw", "max_steps=3", "--out", str(out)])
    except BaseException:  # noqa: BLE001 - SystemExit included
        return {"error": traceback.format_exc()}
    lines = out.read_text().splitlines() if out.exists() else []
    return {"exit_code": code, "episodes": len(lines), "steps": sum(len(json.loads(line)["steps"]) for line in lines),
            "steps_have_logprobs": all(all(len(s["logprobs"]) == len(s["response_ids"]) > 0 for s in json.loads(line)["steps"])
                                       for line in lines)}


def main(workdir: str, out_path: str) -> None:
    from agents.hf import HFPolicy
    from agents.tiny import ensure_tiny_model, env_corpus
    from agents.vllm_backend import VLLMPolicy

    work = Path(workdir)
    folder = ensure_tiny_model(work / "model", env_corpus("sokoban", episodes=8))
    hf = HFPolicy(str(folder))
    perturb(hf.model, 0.1, seed=3)  # varied text, so that stop strings have something to cut
    v = VLLMPolicy(hf, work / "engine", kv_cache_gb=0.25)
    report: dict = {"engine_folder_is_model_folder": Path(v.llm.llm_engine.model_config.model) == folder}
    for name, check in [("generation", check_generation), ("sync", check_sync), ("lora", check_lora),
                        ("trainer", check_trainer_iteration)]:
        try:
            report[name] = check(hf, v)
        except Exception:  # noqa: BLE001 - reported, so that the other checks still run
            report[name] = {"error": traceback.format_exc()}
    report["cli"] = check_cli(folder, work, v)
    Path(out_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
