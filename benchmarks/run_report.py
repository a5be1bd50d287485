"""Evaluation curves of finished `groupwise train` runs, side by side: Markdown, JSON and a PNG.

    python benchmarks/run_report.py --name alfworld-gigpo \\
        "GiGPO lr 1e-3=runs/alf-gigpo-lr1e3" "GiGPO lr 2e-4=runs/alf-gigpo"

For each run (LABEL=RUN_DIR): success on the evaluation games at every evaluation, overall and per
task type when the env reports task types, with the binomial standard error of each figure (the
evaluation plays each game once, so sqrt(p(1-p)/n) is the noise of one measurement). Writes
benchmarks/results/<name>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from algos.logger import plot_runs, read_jsonl  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def eval_curve(run_dir: Path) -> list[dict[str, float]]:
    """The run's evaluations in order: {"iteration", "success", "success/<task type>", ...}."""
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/success" in r]
    if not rows:
        raise SystemExit(f"{run_dir}: no evaluation in metrics.jsonl (did the run evaluate?)")
    return [{"iteration": r["iteration"], **{k[len("eval/"):]: v for k, v in r.items() if k.startswith("eval/")}}
            for r in rows]


def _pm(p: float, n: int) -> str:
    return f"{p:.3f} ± {math.sqrt(max(p * (1 - p), 0.0) / max(n, 1)):.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--name", required=True, help="file name of the report in benchmarks/results/")
    parser.add_argument("--note", default="", help="a paragraph put under the title")
    args = parser.parse_args(argv)
    report = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"expected LABEL=RUN_DIR, got {item!r}")
        run = Path(path)
        config = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        report[label] = {"run_dir": str(run), "eval_episodes": config.get("eval_episodes"), "curve": eval_curve(run)}

    lines = [f"# {args.name}: evaluation success during training", ""]
    if args.note:
        lines += [args.note, ""]
    for label, run in report.items():
        n = run["eval_episodes"] or 0
        kinds = sorted(k for k in run["curve"][0] if k.startswith("success/"))
        lines += [f"## {label}", "", f"`{run['run_dir']}`, {n} evaluation games (± is the binomial standard error)", "",
                  "| iteration | success | " + " | ".join(k.split("/", 1)[1] for k in kinds) + " | mean steps |",
                  "|---" * (3 + len(kinds)) + "|"]
        for e in run["curve"]:
            per_type = [_pm(e[k], n // max(len(kinds), 1)) for k in kinds]
            lines.append(f"| {e['iteration']} | {_pm(e['success'], n)} | " + " | ".join(per_type)
                         + f" | {e.get('steps', float('nan')):.1f} |")
        lines.append("")
    lines.append("Per-task-type errors assume the games split evenly between the types.")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    last = max(e["iteration"] for run in report.values() for e in run["curve"])
    series = {label: [(e["iteration"], e["success"]) for e in run["curve"]] for label, run in report.items()}
    for label, points in series.items():
        if len(points) == 1:  # a run evaluated once (a warm start) is drawn as a level to compare with
            series[label] = [points[0], (max(last, points[0][0] + 1), points[0][1])]
    plot_runs(series,
              OUT / f"{args.name}.png", title=f"{args.name}: evaluation success", xlabel="iteration",
              ylabel="success")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
