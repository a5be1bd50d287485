"""What RL added in one `groupwise train` run: the final evaluation against the first (the SFT start),
paired on the same evaluation tasks.

    python benchmarks/learning_report.py runs/smollm2-sokoban --name smollm2-learning

Reads the run's summary.json (every evaluation task's outcome, eval_tasks) and config.yaml, and writes
benchmarks/results/<name>.{md,json,png}: start and final success, the paired difference (mean of
final - start over tasks, its standard error sd/sqrt(n) and a bootstrap 95% interval over tasks),
iterations, wall minutes and the trainer's peak RSS. Evaluation tasks are kept apart from SFT and
training tasks by the seed scheme (envs/seeds.py; the run's seeds.json lists them).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def paired_gain(summary: dict) -> dict:
    """Start vs final evaluation of a run, paired by task."""
    from algos.bench import task_success
    from algos.stats import paired_bootstrap

    tasks = summary.get("eval_tasks") or {}
    if len(tasks) < 2:
        raise SystemExit("the run has fewer than two evaluations with per-task outcomes (summary.json eval_tasks)")
    first, last = tasks[min(tasks, key=int)], tasks[max(tasks, key=int)]
    if first["seed"] != last["seed"]:
        raise SystemExit("the first and last evaluations played different tasks")
    start, final = np.array(task_success(first)), np.array(task_success(last))
    d = final - start
    d = d[~np.isnan(d)]
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    ci = paired_bootstrap(final[None, :], start[None, :])
    return {"episodes": int(len(d)), "start_success": float(np.nanmean(start)), "final_success": float(np.nanmean(final)),
            "paired_diff": float(d.mean()), "paired_se": se, "paired_ci": [ci["low"], ci["high"]],
            "z": float(d.mean() / se) if se and se > 0 else math.nan}


def by_task_type(summary: dict) -> dict[str, list[float]]:
    """{type: [start, final]} success per task type, for envs that report one (ALFWorld's task types,
    NumberLine's side of the target): a gain made of one kind of task shows here."""
    curve = summary.get("eval_curve") or []
    if len(curve) < 2:
        return {}
    first, last = curve[0], curve[-1]
    return {k.removeprefix("success/"): [first[k], last[k]] for k in sorted(first)
            if k.startswith("success/") and k in last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a groupwise train run folder (with summary.json)")
    ap.add_argument("--name", required=True, help="report name: writes <out>/<name>.{md,json,png}")
    ap.add_argument("--model", default=None, help="the model's name in the report (default: model.path)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from algos.logger import plot_runs

    summary = json.loads((args.run / "summary.json").read_text())
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    gain = paired_gain(summary)
    model = args.model or config["model"]["path"] or "tiny (built from scratch)"
    report = {"model": model, "env": summary["env"], "algo": summary["algo"], **gain,
              "iterations": summary["iterations"], "wall_minutes": round(summary["seconds"] / 60, 1),
              "peak_rss_gb": summary.get("peak_rss_gb"), "by_task_type": by_task_type(summary),
              "run": str(args.run)}
    lines = [f"# {args.name}: {model} on {summary['env']} ({summary['algo']})", "",
             "| evaluation tasks | start (SFT) | after RL | paired difference | SE | 95% CI | difference / SE |",
             "|---|---|---|---|---|---|---|",
             f"| {gain['episodes']} | {gain['start_success']:.3f} | {gain['final_success']:.3f} | "
             f"{gain['paired_diff']:+.3f} | {gain['paired_se']:.3f} | [{gain['paired_ci'][0]:+.3f}, "
             f"{gain['paired_ci'][1]:+.3f}] | {gain['z']:.1f} |", "",
             f"{report['iterations']} RL iterations, {report['wall_minutes']} min, trainer peak RSS "
             f"{report['peak_rss_gb']} GB. The same evaluation tasks before and after (per-task outcomes of the run's "
             f"summary.json), apart from SFT and training tasks (seeds.json).", "",
             *_task_type_lines(report["by_task_type"]),
             "settings: " + json.dumps({k: config[k] for k in ("model", "env", "sft", "rl", "algo", "eval") if k in config})]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    plot_runs(_curves(args.run, summary, f"{model} ({summary['algo']})"), args.out / f"{args.name}.png",
              title=f"{args.name}: success", xlabel="iteration", ylabel="success")
    print("\n".join(lines))


def _curves(run: Path, summary: dict, label: str) -> dict[str, list[tuple[float, float]]]:
    """The evaluations (all tasks and per task type) and each iteration's training rollouts
    (metrics.jsonl), which show the path between two evaluations."""
    evals = summary["eval_curve"]
    curves = {f"{label}: evaluation": [(e["iteration"], e["success"]) for e in evals]}
    for kind in by_task_type(summary):
        curves[f"evaluation, {kind}"] = [(e["iteration"], e[f"success/{kind}"]) for e in evals if f"success/{kind}" in e]
    from algos.logger import read_jsonl

    metrics = run / "metrics.jsonl"
    rows = read_jsonl(metrics) if metrics.exists() else []
    rollouts = [(r["iteration"], r["rollout/success"]) for r in rows if "rollout/success" in r]
    if rollouts:
        curves["training rollouts (each iteration's tasks)"] = rollouts
    return curves


def _task_type_lines(kinds: dict[str, list[float]]) -> list[str]:
    if not kinds:
        return []
    return ["| task type | start | after RL |", "|---|---|---|",
            *(f"| {k} | {a:.3f} | {b:.3f} |" for k, (a, b) in kinds.items()), ""]


if __name__ == "__main__":
    main()
