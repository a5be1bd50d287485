"""`groupwise bench`: compare algorithms on one environment at equal budget, over several seeds.

    groupwise bench benchmarks/configs/sokoban.yaml                 # the shipped comparison
    groupwise bench my.yaml --seeds 0 1 2 --out runs/bench rl.lr=1e-4

A bench config (YAML) names the algorithms and what every run shares:

    name: sokoban-tiny
    seeds: [0, 1]
    common: [env.id=sokoban, rl.iterations=10, ...]   # the same budget for every algorithm
    algorithms:
      GRPO: [algo.name=grpo]
      PPO (critic): [algo.name=gae, algo.gae.critic_lr=1e-3]

For each seed one warm start is trained (`groupwise train` with rl.iterations=0) and every algorithm
continues from that same model, so the comparison costs one SFT per seed and differs only in the
algorithm's overrides. Runs that already finished (summary.json present) are not run again, so an
interrupted bench continues where it stopped. Writes bench.md (per algorithm the final success
with its 95% CI over seeds; per pair the paired difference on the same evaluation tasks with its
bootstrap CI and "resolved" or "not resolved"), bench.json (the same figures) and bench.png
(success curves beside the intervals).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from algos.checkpoint import write_json_atomic
from algos.config import ConfigError, apply_overrides, load_yaml
from algos.stats import mean_ci, paired_bootstrap, verdict
from algos.policy_setup import uses_compact_prompt
from algos.train_config import TrainConfig
from envs.seeds import stream


@dataclass
class BenchConfig:
    name: str = "bench"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    #: Overrides applied to every run (env, budget, batch sizes, evaluation).
    common: list[str] = field(default_factory=list)
    #: Label -> overrides that make the algorithm (at least algo.name=...).
    algorithms: dict[str, list[str]] = field(default_factory=dict)
    #: One SFT warm start per seed shared by every algorithm (off: each run does its own).
    shared_warm_start: bool = True
    out_dir: str = "runs/bench"
    #: A paired difference whose 95% interval lies within ±tie_margin is reported as a resolved tie.
    tie_margin: float = 0.05


def load_bench(path: str | Path) -> BenchConfig:
    if not Path(path).is_file():
        raise ConfigError(f"bench config {path} does not exist (the shipped ones are in benchmarks/configs/)")
    bench = load_yaml(BenchConfig, path)
    if not bench.algorithms:
        raise ConfigError(f"{path}: `algorithms` is empty; give at least one, e.g. GRPO: [algo.name=grpo]")
    if not bench.seeds:
        raise ConfigError(f"{path}: `seeds` is empty")
    if len(set(bench.seeds)) != len(bench.seeds) or min(bench.seeds) < 0:
        raise ConfigError(f"{path}: `seeds` must be distinct and >= 0; got {bench.seeds}")
    if not 0 < bench.tie_margin < 1:
        raise ConfigError(f"{path}: tie_margin must be between 0 and 1 (a difference in success rate); "
                          f"got {bench.tie_margin}")
    return bench


def run_configs(bench: BenchConfig, out: Path) -> tuple[dict[int, TrainConfig], dict[tuple[str, int], TrainConfig]]:
    """Every run's TrainConfig, built (and so validated) before anything trains."""
    warm, runs = {}, {}
    for seed in bench.seeds:
        base = [f"seed={seed}", "progress=false", "tensorboard=false"] + bench.common
        if bench.shared_warm_start:
            warm[seed] = apply_overrides(TrainConfig(), base + ["rl.iterations=0", f"out_dir={out / f'warm-start-seed{seed}'}"])
        for label, overrides in bench.algorithms.items():
            extra = []
            if bench.shared_warm_start:
                # the algorithm continues from the warm start's model, with the same compact prompt
                prompt = "compact" if uses_compact_prompt(warm[seed]) else "full"
                extra = [f"model.path={out / f'warm-start-seed{seed}' / 'final-model'}", "model.gguf_file=",
                         "sft.enabled=false", f"env.prompt={prompt}"]
                if warm[seed].model.lora == "auto" and not warm[seed].model.path:
                    extra.append("model.lora=off")  # the tiny model trains in full, as in its warm start
            cfg = apply_overrides(TrainConfig(), base + extra + list(overrides)
                                  + [f"out_dir={out / f'{_slug(label)}-seed{seed}'}"])
            runs[(label, seed)] = cfg
    return warm, runs


def run_bench(bench: BenchConfig, out: Path) -> dict[str, Any]:
    from algos.train_checks import check_config
    from algos.train import train

    warm, runs = run_configs(bench, out)
    for cfg in [*warm.values(), *runs.values()]:
        check_config(cfg)  # a wrong setting fails now, not after an hour of other runs
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in bench.algorithms}
    total = len(runs) + len(warm)
    done = 0
    for seed in bench.seeds:
        if seed in warm:
            _train_once(warm[seed], train)
            done += 1
        for label in bench.algorithms:
            cfg = runs[(label, seed)]
            print(f"[{done + 1}/{total}] {label}, seed {seed}", flush=True)
            summary = _train_once(cfg, train)
            results[label].append(summary)
            done += 1
            print(f"    success {summary['success_before_rl']:.3f} -> {summary['success_after_rl']:.3f} "
                  f"({summary['seconds'] / 60:.1f} min)", flush=True)
    return report(bench, results, out)


def report_finished(bench: BenchConfig, out: Path) -> dict[str, Any]:
    """The report of the seeds whose runs have all finished, training nothing (`--report-only`):
    a long bench can be read while it runs, or after it stopped part way."""
    _, runs = run_configs(bench, out)
    finished = [seed for seed in bench.seeds if all(_finished(runs[(label, seed)]) for label in bench.algorithms)]
    if not finished:
        raise ConfigError(f"no seed of {bench.name} has finished every algorithm yet in {out}")
    bench.seeds = finished
    results = {label: [_finished(runs[(label, seed)]) for seed in finished] for label in bench.algorithms}
    return report(bench, results, out)


def _finished(cfg: TrainConfig) -> dict[str, Any] | None:
    """A run's summary if it finished (not interrupted), else None."""
    path = Path(cfg.out_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else None
    return summary if summary and not summary.get("interrupted") else None


def _train_once(cfg: TrainConfig, train: Any) -> dict[str, Any]:
    summary = _finished(cfg)
    if summary is not None:
        return summary
    summary = train(cfg, resume=(Path(cfg.out_dir) / "checkpoints").is_dir())  # continue a killed run
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    return summary


def report(bench: BenchConfig, results: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, Any]:
    """bench.md, bench.json and bench.png: per algorithm the final success with its 95% CI over
    seeds; per pair of algorithms the paired difference on the same evaluation tasks (two-level
    bootstrap over seeds and tasks, algos/stats.py) with its CI and whether it is resolved."""
    from algos.logger import plot_comparison

    lines = [f"# {bench.name}: {len(bench.seeds)} seed{'s' if len(bench.seeds) > 1 else ''} ({', '.join(map(str, bench.seeds))})", "",
             "| algorithm | final success | 95% CI over seeds | per seed | best success | start (SFT) | "
             "wall time (min) | tokens generated | tokens trained |", "|---|---|---|---|---|---|---|---|---|"]
    table, intervals = {}, {}
    for label, runs in results.items():
        final = [r["success_after_rl"] for r in runs]
        best = [r["best_success"] if r.get("best_success") is not None else r["success_after_rl"] for r in runs]
        start = [r["success_before_rl"] for r in runs]
        minutes = [r["seconds"] / 60 for r in runs]
        gen = [r.get("tokens_generated", 0.0) for r in runs]
        trained = [r.get("tokens_trained", 0.0) for r in runs]
        mean, low, high = mean_ci(final)
        ci = None if math.isnan(low) else [low, high]  # one seed: no interval
        table[label] = {"final": final, "final_mean": mean, "final_ci": ci, "best": best, "start": start,
                        "minutes": minutes, "tokens_generated": gen, "tokens_trained": trained}
        intervals[label] = (mean, low, high)
        lines.append(f"| {label} | {mean:.3f} | {_ci(low, high)} | {', '.join(f'{v:.3f}' for v in final)} | "
                     f"{statistics.mean(best):.3f} | {statistics.mean(start):.3f} | {statistics.mean(minutes):.1f} | "
                     f"{statistics.mean(gen):,.0f} | {statistics.mean(trained):,.0f} |")
    gains = gains_over_start(results)
    if gains:
        lines += ["", "What RL added: the final evaluation minus the first (the SFT start), paired on the same tasks "
                  "(95% interval over seeds and tasks):", "", "| algorithm | gain | 95% CI |", "|---|---|---|"]
        lines += [f"| {label} | {g['diff']:+.3f} | [{g['low']:+.3f}, {g['high']:+.3f}] |" for label, g in gains.items()]
        for label, g in gains.items():
            table[label]["gain_over_start"] = g
            intervals[f"{label}: after RL − start"] = (g["diff"], g["low"], g["high"])
    pairs = paired_differences(results, bench.tie_margin)
    if pairs:
        lines += ["", f"Paired differences on the same evaluation tasks (final evaluation; 95% interval from "
                  f"{N_BOOT:,} bootstrap draws over seeds and, within each seed, over tasks; resolved = the interval "
                  f"excludes 0, or lies within ±{bench.tie_margin:g}):", "",
                  "| difference | mean | 95% CI | verdict | seeds x tasks |", "|---|---|---|---|---|"]
        for p in pairs:
            lines.append(f"| {p['a']} − {p['b']} | {p['diff']:+.3f} | [{p['low']:+.3f}, {p['high']:+.3f}] | "
                         f"{p['verdict']} | {p['seeds']} x {p['tasks']} |")
            intervals[f"{p['a']} − {p['b']}"] = (p["diff"], p["low"], p["high"])
    lines += ["", "Final success: mean over seeds of the evaluation success rate, with the 95% t-interval over seeds; "
              "every run of a seed is evaluated on the same seeded tasks (envs/seeds.py keeps them apart from "
              "SFT and training tasks).", "",
              "common settings: " + " ".join(bench.common)]
    lines += [f"{label}: {' '.join(ov)}" for label, ov in bench.algorithms.items()]
    failed = {label: sum(int(e.get("failed_episodes", 0)) for r in runs for e in r["eval_curve"])
              for label, runs in results.items()}
    if any(failed.values()):
        lines += ["", "Evaluation episodes whose env failed (left out of the success rates): "
                  + ", ".join(f"{label} {n}" for label, n in failed.items())]
    lines += _task_type_lines(results)
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text)
    curves = {label: [[(e["iteration"], e["success"]) for e in r["eval_curve"]] for r in runs]
              for label, runs in results.items()}
    write_json_atomic(out / "bench.json", {"config": bench.__dict__, "results": table, "pairs": pairs,
                                           "curves": curves}, indent=2)
    plot_comparison(curves, intervals, out / "bench.png", title=f"{bench.name}: evaluation success",
                    xlabel="iteration", ylabel="success")
    print(text)
    print(f"table: {out / 'bench.md'}   curves and intervals: {out / 'bench.png'}")
    return table


#: Bootstrap draws of a paired difference: the 2.5% and 97.5% quantiles move by < 0.002 beyond this.
N_BOOT = 10_000


def paired_differences(results: dict[str, list[dict[str, Any]]], tie_margin: float) -> list[dict[str, Any]]:
    """Every pair (a, b) of algorithms, a listed after b: the mean of a - b over seeds and tasks with
    its bootstrap 95% interval. A run's outcomes are the final evaluation's per-task success; the
    runs of one seed must have played the same tasks."""
    labels = list(results)
    outcomes = {label: [final_task_outcomes(r) for r in runs] for label, runs in results.items()}
    pairs = []
    for j, a in enumerate(labels):
        for b in labels[:j]:
            if any(x is None for x in outcomes[a] + outcomes[b]):
                continue  # runs from before per-task outcomes were kept
            for k, ((sa, _), (sb, _)) in enumerate(zip(outcomes[a], outcomes[b])):
                if sa != sb:
                    raise ValueError(f"{a} and {b} were evaluated on different tasks in their run #{k}; "
                                     f"a paired comparison needs the same eval.seed and eval.episodes")
            xa = np.array([o for _, o in outcomes[a]])
            xb = np.array([o for _, o in outcomes[b]])
            ci = paired_bootstrap(xa, xb, n_boot=N_BOOT, seed=stream(0, "bench_bootstrap", len(pairs)))
            resolved, words = verdict(ci["low"], ci["high"], a, b, tie_margin)
            pairs.append({"a": a, "b": b, **ci, "resolved": resolved, "verdict": words,
                          "seeds": int(xa.shape[0]), "tasks": int(xa.shape[1])})
    return pairs


def gains_over_start(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per algorithm, final minus first evaluation on the same tasks, bootstrapped over seeds and tasks."""
    gains = {}
    for j, (label, runs) in enumerate(results.items()):
        tasks = [r.get("eval_tasks") or {} for r in runs]
        if not all(len(t) >= 2 for t in tasks):
            continue
        first = np.array([task_success(t[min(t, key=int)]) for t in tasks])
        last = np.array([task_success(t[max(t, key=int)]) for t in tasks])
        if first.shape == last.shape:
            gains[label] = paired_bootstrap(last, first, n_boot=N_BOOT, seed=stream(1, "bench_bootstrap", j))
    return gains


def final_task_outcomes(summary: dict[str, Any]) -> tuple[list[int], list[float]] | None:
    """(task seeds, per-task success) of a run's last evaluation, or None if it kept none."""
    tasks = summary.get("eval_tasks") or {}
    if not tasks:
        return None
    last = tasks[max(tasks, key=int)]
    return list(last["seed"]), task_success(last)


def task_success(evaluation: dict[str, Any]) -> list[float]:
    """Per-task success of one evaluation's outcomes, NaN for a task without one (its env failed);
    runs from before eval.samples_per_task stored 0/1 under "won"."""
    return [math.nan if v is None else float(v) for v in evaluation.get("success", evaluation.get("won", []))]


def _ci(low: float, high: float) -> str:
    return "n/a (one seed)" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def _task_type_lines(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Success per task type (envs that report one, like ALFWorld) at the start and the end of RL."""
    types = sorted({k for runs in results.values() for r in runs for e in r["eval_curve"] for k in e
                    if k.startswith("success/")})
    if not types:
        return []
    lines = ["", "success per task type, SFT start -> after RL (mean over seeds):", "",
             "| algorithm | " + " | ".join(t.removeprefix("success/") for t in types) + " |",
             "|---|" + "---|" * len(types)]
    for label, runs in results.items():
        cells = []
        for t in types:
            start = [r["eval_curve"][0].get(t) for r in runs]
            end = [r["eval_curve"][-1].get(t) for r in runs]
            start, end = [v for v in start if v is not None], [v for v in end if v is not None]
            cells.append(f"{statistics.mean(start):.2f} -> {statistics.mean(end):.2f}" if start and end else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _slug(label: str) -> str:
    """A directory name for a label: "PPO (critic)" -> "ppo-critic"."""
    words = "".join(c if c.isalnum() else " " for c in label.lower()).split()
    return "-".join(words) or "run"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="groupwise bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="bench YAML (see benchmarks/configs/)")
    ap.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    ap.add_argument("--out", help="where runs and the report go (default: the config's out_dir)")
    ap.add_argument("--only", nargs="+", metavar="LABEL", help="run only these algorithms")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: report the seeds whose runs have all finished")
    args, overrides = ap.parse_known_args(argv)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)} (extra settings are key=value overrides)")
    try:
        bench = load_bench(args.config)
        if args.seeds:
            bench.seeds = args.seeds
        if args.only:
            unknown = [o for o in args.only if o not in bench.algorithms]
            if unknown:
                raise ConfigError(f"--only {unknown}: not in the config; it has {list(bench.algorithms)}")
            bench.algorithms = {k: v for k, v in bench.algorithms.items() if k in args.only}
        bench.common = bench.common + overrides
        out = Path(args.out or bench.out_dir)
        report_finished(bench, out) if args.report_only else run_bench(bench, out)
    except ConfigError as exc:
        print(f"groupwise bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=sys.stderr)
        return 130
    return 0
