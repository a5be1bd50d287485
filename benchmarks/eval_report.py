"""Policies compared on the same evaluation games: pooled `groupwise eval` reports, per task type.

    python benchmarks/eval_report.py --name alfworld-learning \\
        "SFT start=sft-a.json,sft-b.json" "SFT + GiGPO=gigpo-a.json,gigpo-b.json"

Each LABEL=FILES lists `groupwise eval` JSON outputs (several seed ranges of one policy are
pooled by their episode counts). Compare policies on the same files' seeds, so that they play the
same games. Prints and writes benchmarks/results/<name>.{md,json,png}: success overall and per task
type with its binomial standard error, and each policy's difference from the first with the
standard error of that difference (independent episodes: sqrt(se1^2 + se2^2)).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def load_report(path: Path) -> dict:
    """A `groupwise eval` report; the JSON object is the last thing it prints."""
    text = path.read_text()
    start = text.find("{\n")
    if start < 0:
        raise SystemExit(f"{path}: no JSON report in it (is it the output of `groupwise eval`?)")
    return json.loads(text[start:])


def fill_counts(reports: list[dict]) -> None:
    """Give reports without per-type episode counts (older `groupwise eval`) those of a report on
    the same seeds: the same seeds are the same games, so the same task types."""
    known = {(r["first_seed"], r["episodes"]): {k: v for k, v in r.items() if k.startswith("episodes/")}
             for r in reports if any(k.startswith("episodes/") for k in r)}
    for r in reports:
        if not any(k.startswith("episodes/") for k in r):
            r.update(known.get((r["first_seed"], r["episodes"]), {}))


def pool(reports: list[dict]) -> dict[str, tuple[int, int]]:
    """{"all" or task type: (wins, episodes)} summed over the reports."""
    tally: dict[str, list[int]] = {}
    for r in reports:
        n = int(r["episodes"])
        parts = {"all": (round(r["success"] * n), n)}
        for key, count in list(r.items()):
            if key.startswith("episodes/"):
                kind = key[len("episodes/"):]
                parts[kind] = (round(r[f"success/{kind}"] * count), int(count))
        for kind, (wins, count) in parts.items():
            t = tally.setdefault(kind, [0, 0])
            t[0] += wins
            t[1] += count
    return {k: (w, n) for k, (w, n) in tally.items()}


def se(wins: int, n: int) -> float:
    p = wins / max(n, 1)
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("policies", nargs="+", metavar="LABEL=FILE[,FILE...]")
    args = ap.parse_args()
    rows, loaded = [], []
    for item in args.policies:
        label, _, files = item.partition("=")
        if not files:
            raise SystemExit(f"{item!r}: write LABEL=FILE[,FILE...]")
        loaded.append((label, files, [load_report(Path(f)) for f in files.split(",")]))
    fill_counts([r for _, _, reports in loaded for r in reports])
    for label, files, reports in loaded:
        rows.append({"label": label, "files": files.split(","),
                     "seeds": [[r["first_seed"], r["first_seed"] + r["episodes"] - 1] for r in reports],
                     "tally": pool(reports)})
    kinds = ["all"] + sorted(k for k in rows[0]["tally"] if k != "all")
    base = rows[0]["tally"]
    lines = [f"# {args.name}: success on the same evaluation games\n", args.title + "\n" if args.title else "",
             "| policy | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for row in rows:
        cells = []
        for k in kinds:
            w, n = row["tally"].get(k, (0, 0))
            cells.append(f"{w}/{n} = {w / max(n, 1):.3f} ± {se(w, n):.3f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    for row in rows[1:]:
        cells = []
        for k in kinds:
            (w, n), (w0, n0) = row["tally"].get(k, (0, 0)), base.get(k, (0, 0))
            diff = w / max(n, 1) - w0 / max(n0, 1)
            err = math.sqrt(se(w, n) ** 2 + se(w0, n0) ** 2)
            cells.append(f"{diff:+.3f} ± {err:.3f} ({diff / err if err else 0:+.1f} se)")
        lines.append(f"| {row['label']} − {rows[0]['label']} | " + " | ".join(cells) + " |")
    lines.append("\n± is the binomial standard error (one sampled episode per game); a difference's error is "
                 "sqrt(se1² + se2²).\n")
    md = "\n".join(lines)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.md").write_text(md)
    (OUT / f"{args.name}.json").write_text(json.dumps(rows, indent=2))
    plot(rows, kinds, OUT / f"{args.name}.png", args.name)
    print(md)
    return 0


def plot(rows: list[dict], kinds: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(kinds), 3.6))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        xs = [j + i * width for j in range(len(kinds))]
        ps = [row["tally"].get(k, (0, 1))[0] / max(row["tally"].get(k, (0, 1))[1], 1) for k in kinds]
        errs = [se(*row["tally"].get(k, (0, 1))) for k in kinds]
        ax.bar(xs, ps, width, yerr=errs, capsize=3, label=row["label"])
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(kinds))])
    ax.set_xticklabels([k.replace("_", " ") for k in kinds], fontsize=8)
    ax.set_ylabel("success")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
