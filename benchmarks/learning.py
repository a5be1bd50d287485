"""GRPO vs GiGPO at equal cost: same warm start, same batches, same budget, several seeds.

For each seed, one SFT warm start is trained (the `groupwise train` default recipe with no RL
iterations) and both estimators continue from that same model with identical settings; only
`algo.name` differs. Prints a table of final evaluation success (mean, std, min-max over seeds) and
writes `learning.md`, `learning.json` and `learning.png` (evaluation success curves, mean with a
min-max band) to --out.

    python benchmarks/learning.py [--seeds 0 1 2] [--iterations 20] [--quick] [key=value ...]

Extra key=value arguments are passed to every run (e.g. rl.lr=1e-4).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from algos.config import apply_overrides
from algos.logger import plot_runs
from algos.train import train
from algos.train_config import TrainConfig

ALGOS = ("grpo", "gigpo")


def run_config(out: Path, seed: int, overrides: list[str]) -> TrainConfig:
    cfg = apply_overrides(TrainConfig(), overrides)
    cfg.out_dir, cfg.seed, cfg.progress = str(out), seed, False
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where the report goes")
    ap.add_argument("--runs", type=Path, default=Path("runs/learning"), help="where the training runs go")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 iterations, tiny batches")
    args, overrides = ap.parse_known_args()
    common = [f"rl.iterations={args.iterations}", "eval.every=5", "tensorboard=false"] + overrides
    if args.quick:
        common += ["rl.iterations=2", "eval.every=1", "eval.episodes=8", "sft.episodes=32", "rl.tasks_per_iter=2"]
    curves: dict[str, list[list[tuple[float, float]]]] = {a: [] for a in ALGOS}
    finals: dict[str, list[float]] = {a: [] for a in ALGOS}
    starts: list[float] = []
    for seed in args.seeds:
        sft_out = args.runs / f"sft-seed{seed}"
        sft = train(run_config(sft_out, seed, common + ["rl.iterations=0"]))
        starts.append(sft["success_after_rl"])
        for algo in ALGOS:
            cfg = run_config(args.runs / f"{algo}-seed{seed}", seed, common + [
                f"algo.name={algo}", f"model.path={sft_out / 'final-model'}", "model.lora=off",
                "sft.enabled=false", "env.prompt=compact"])
            summary = train(cfg)
            curves[algo].append([(e["iteration"], e["success"]) for e in summary["eval_curve"]])
            finals[algo].append(summary["success_after_rl"])
            print(f"seed {seed} {algo}: {summary['success_before_rl']:.3f} -> {summary['success_after_rl']:.3f}",
                  flush=True)
    report(args.out, finals, starts, curves, common)


def report(out: Path, finals: dict[str, list[float]], starts: list[float],
           curves: dict[str, list[list[tuple[float, float]]]], settings: list[str]) -> None:
    lines = ["| estimator | final eval success: mean | std | min-max | per seed |", "|---|---|---|---|---|"]
    lines.append(_row("SFT start", starts))
    lines += [_row(a, finals[a]) for a in ALGOS]
    if all(finals.values()):
        gaps = [g - r for g, r in zip(finals["gigpo"], finals["grpo"])]
        lines.append(f"\nGiGPO - GRPO per seed: {', '.join(f'{g:+.3f}' for g in gaps)}")
    lines.append(f"\nsettings: {' '.join(settings)}")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.md").write_text(table + "\n")
    (out / "learning.json").write_text(json.dumps({"finals": finals, "sft_start": starts, "curves": curves,
                                                   "settings": settings}, indent=2))
    plot_runs({a: curves[a] for a in ALGOS}, out / "learning.png", title="Sokoban: GRPO vs GiGPO (eval success)",
              ylabel="success")


def _row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | - | - | - | - |"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"| {name} | {statistics.mean(values):.3f} | {std:.3f} | {min(values):.3f}-{max(values):.3f} | "
            f"{', '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
