"""WebShop: the expert through `groupwise rollout`, env steps per second, search latency.

    python benchmarks/webshop_bench.py            # 100 text tasks, 20 browser tasks, 100k-product search
    python benchmarks/webshop_bench.py --quick    # 20 text, 4 browser, 10k products

Measured side by side in this run:
1. `groupwise rollout --env webshop --policy expert`: success share and mean score, text mode over
   100 tasks and browser mode over 20.
2. Env steps per second in text mode with 1 and 8 envs (a plain loop, one shared server; every
   step is an HTTP request and a page parse) and in browser mode with 1 env (Chromium renders,
   screenshots and reads the accessibility tree each step). The actions are the expert's.
3. Search latency (one query, ms) over catalogs of 1,000 and 100,000 products.
Writes benchmarks/results/webshop-bench.{md,json}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results"


def rollout(episodes: int, *extra: str) -> dict[str, float]:
    from algos.cli import main as cli

    out = io.StringIO()
    with redirect_stdout(out):
        cli(["rollout", "--env", "webshop", "--policy", "expert", "--episodes", str(episodes), *extra])
    text = out.getvalue()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def steps_per_second(num_envs: int, steps: int, **env_kwargs: object) -> float:
    """Expert steps per second over `num_envs` envs stepped in turn (resets included)."""
    from envs.webshop.env import WebShopEnv

    envs = [WebShopEnv(**env_kwargs) for _ in range(num_envs)]  # one shared server per process
    seeds = iter(range(10_000))
    for env in envs:
        env.reset(seed=next(seeds))
    done = 0
    start = time.perf_counter()
    while done < steps:
        for env in envs:
            _, _, terminated, truncated, _ = env.step(env.expert_action())
            done += 1
            if terminated or truncated:
                env.reset(seed=next(seeds))
    elapsed = time.perf_counter() - start
    for env in envs:
        env.close()
    return done / elapsed


def search_latency(num_products: int, queries: int = 200) -> tuple[float, float]:
    """(build or load seconds, mean ms per query) of BM25 search over a generated catalog."""
    from envs.webshop.catalog import generate_catalog, make_goals
    from envs.webshop.search import ProductSearch

    products = generate_catalog(num_products)
    goals = make_goals(products, queries)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        search = ProductSearch(products, cache)
        build = time.perf_counter() - start
        start = time.perf_counter()
        for goal in goals:
            search.search(goal.instruction)
        return build, 1e3 * (time.perf_counter() - start) / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    text_tasks, browser_tasks, big, steps = (20, 4, 10_000, 60) if args.quick else (100, 20, 100_000, 300)
    report: dict = {"load_average": os.getloadavg()[0]}

    print(f"1. expert rollouts: {text_tasks} text tasks, {browser_tasks} browser tasks", flush=True)
    report["expert"] = {
        "text": rollout(text_tasks),
        "browser": rollout(browser_tasks, "--workers", "0", "--env-kw", "mode=browser"),
    }
    for mode, m in report["expert"].items():
        print(f"  {mode:7s}: success {m['success']:.2f}, mean score {m['score']:.3f}, {m['steps']:.1f} steps", flush=True)

    print("2. env steps per second (expert actions)", flush=True)
    report["steps_per_second"] = {
        "text, 1 env": steps_per_second(1, steps),
        "text, 8 envs": steps_per_second(8, steps),
        "browser, 1 env": steps_per_second(1, steps // 5, mode="browser"),
    }
    for k, v in report["steps_per_second"].items():
        print(f"  {k:15s}: {v:.1f} steps/s", flush=True)

    print("3. search latency", flush=True)
    report["search"] = {}
    for n in (1_000, big):
        build, ms = search_latency(n)
        report["search"][n] = {"index_seconds": build, "query_ms": ms}
        print(f"  {n:>7,} products: index built in {build:.1f} s, {ms:.2f} ms per query", flush=True)
    write_report(report)


def write_report(report: dict) -> None:
    exp, sps, search = report["expert"], report["steps_per_second"], report["search"]
    lines = ["# WebShop", "", f"Load average at the start: {report['load_average']:.1f} (2 cores).", "",
             "| expert (`groupwise rollout`) | tasks | success | mean score | steps |", "|---|---|---|---|---|"]
    lines += [f"| {mode} | {m['episodes']:.0f} | {m['success']:.2f} | {m['score']:.3f} | {m['steps']:.1f} |"
              for mode, m in exp.items()]
    base = sps["text, 1 env"]
    lines += ["", "| env | steps/s | ratio to text, 1 env |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {v / base:.2f} |" for k, v in sps.items()]
    lines += ["", "| products | index build (s) | query (ms) |", "|---|---|---|"]
    lines += [f"| {n:,} | {v['index_seconds']:.1f} | {v['query_ms']:.2f} |" for n, v in search.items()]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "webshop-bench.md").write_text("\n".join(lines) + "\n")
    (OUT / "webshop-bench.json").write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
