"""Async vs sync rollout wall time on an environment with uneven step latency.

    python benchmarks/async_rollout_bench.py            # about a minute
    python benchmarks/async_rollout_bench.py --rounds 1 # shorter

The env is Sokoban whose every step sleeps a replayable pseudo-random 0-200 ms first
(`tests/latency_env.py`), standing in for simulators, browsers or tool calls whose latency varies.
The policy is the env's expert with a fixed generation cost per batched call (sleep 20 ms + 2 ms
per request, a stand-in for a batched backend), so both engines play exactly the same moves and the
figures are about scheduling alone: the sync engine waits, every turn, for the slowest running
episode; the async engine generates for whichever episodes' steps came back. Each round plays the
same tasks in both modes (alternating which goes first) and checks that the recorded trajectories
are identical. Two pool layouts: one env per worker process, and four envs per worker (a worker
steps its envs one after another, and the expert's `expert_action` call waits for the worker to be
free, so less can overlap). Writes benchmarks/results/async-rollout.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/async_rollout_bench.py`
    sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from agents.policy import Generation, Request, SamplingParams  # noqa: E402
from agents.prompts import PromptBuilder  # noqa: E402
from agents.rollout import Rollout, collect  # noqa: E402
from agents.simple import ExpertPolicy  # noqa: E402
from envs import EnvPool  # noqa: E402

ENV_ID = "bench-slow-sokoban"
OUT = ROOT / "benchmarks" / "results"
MAX_DELAY = 0.2  # seconds of sleep per step, at most
GEN_BASE, GEN_PER_REQUEST = 0.020, 0.002  # seconds per generate call, and per request in it


class CostlyExpert(ExpertPolicy):
    """The expert, charged a fixed generation cost per batched call."""

    def generate(self, requests: Sequence[Request], sampling: SamplingParams) -> list[Generation]:
        time.sleep(GEN_BASE + GEN_PER_REQUEST * len(requests))
        return super().generate(requests, sampling)


def _content(ro: Rollout) -> list[tuple]:
    return [(s.group_id, s.traj_id, s.turn, s.prompt_ids, s.response, s.action, s.reward, s.anchor, s.done)
            for s in ro.steps] + [(t.traj_id, t.length, t.won) for t in ro.trajectories]


def run_layout(num_envs: int, group_size: int, workers: int, rounds: int) -> dict:
    prompt = PromptBuilder.for_env("sokoban")
    tasks = num_envs // group_size
    walls: dict[str, list[float]] = {"sync": [], "async": []}
    steps, identical, lengths = 0, True, []
    t0 = time.perf_counter()
    with EnvPool(ENV_ID, num_envs=num_envs, num_workers=workers, env_kwargs={"max_delay": MAX_DELAY}) as pool:
        startup = time.perf_counter() - t0
        for r in range(rounds):
            seeds = list(range(1000 + r * tasks, 1000 + (r + 1) * tasks))
            got = {}
            for mode in (("sync", "async") if r % 2 == 0 else ("async", "sync")):
                ro = collect(pool, CostlyExpert(prompt.action_format), seeds, group_size, prompt=prompt, mode=mode)
                walls[mode].append(ro.metrics["time_total"])
                got[mode] = ro
            identical &= _content(got["sync"]) == _content(got["async"])
            steps += len(got["sync"].steps)
            lengths += [t.length for t in got["sync"].trajectories]
    sync, asyn = sum(walls["sync"]), sum(walls["async"])
    return {"envs": num_envs, "group_size": group_size, "workers": workers, "rounds": rounds,
            "steps": steps, "episode_length_min": min(lengths), "episode_length_max": max(lengths),
            "sync_s": sync, "async_s": asyn, "speedup": sync / asyn, "identical": identical,
            "sync_rounds_s": walls["sync"], "async_rounds_s": walls["async"], "pool_startup_s": startup}


def write_report(rows: list[dict], load: tuple[float, float], seconds: float) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"env": "sokoban + sleep U(0, 0.2 s) per step (tests/latency_env.py)",
            "policy": f"expert + {GEN_BASE * 1000:.0f} ms + {GEN_PER_REQUEST * 1000:.0f} ms/request per generate call",
            "cpu_count": os.cpu_count(), "load_start": load[0], "load_end": load[1], "bench_seconds": seconds}
    (OUT / "async-rollout.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Async vs sync rollout on an environment with uneven step latency", "",
        f"Sokoban whose steps each sleep a replayable pseudo-random 0-200 ms; the expert policy charged "
        f"{GEN_BASE * 1000:.0f} ms + {GEN_PER_REQUEST * 1000:.0f} ms per request for each batched generate "
        f"call. Every round plays the same tasks in both modes; wall time is the sum over rounds. "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start and {load[1]:.1f} at the end; "
        f"the bench took {seconds:.0f} s.", "",
        "| envs (group size) | workers | rounds | steps per mode | episode length | sync (s) | async (s) | "
        "sync / async | identical records |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['envs']} ({r['group_size']}) | {r['workers']} | {r['rounds']} | {r['steps']} | "
                     f"{r['episode_length_min']}-{r['episode_length_max']} | {r['sync_s']:.2f} | "
                     f"{r['async_s']:.2f} | {r['speedup']:.2f}x | {'yes' if r['identical'] else 'NO'} |")
    lines += ["",
              "The sync engine pays, every turn, the slowest running episode's step; the async engine "
              "keeps each episode's steps going and generates for whichever episodes have returned, so "
              "an episode waits only for its own steps and the generate calls. With several envs per "
              "worker, a worker steps them one after another and the expert's `expert_action` call "
              "waits for its worker to be free, which leaves less to overlap. 'identical records' "
              "compares every step's ids, prompt, response, action, reward and anchor between the modes."]
    (OUT / "async-rollout.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    envs.register(ENV_ID, "tests.latency_env:SlowSokobanEnv")
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    rows = [run_layout(16, 4, 16, args.rounds), run_layout(16, 4, 4, args.rounds)]
    seconds = time.perf_counter() - t0
    print(f"{'envs':>5} {'workers':>7} {'sync s':>8} {'async s':>8} {'ratio':>6} identical")
    for r in rows:
        print(f"{r['envs']:>5} {r['workers']:>7} {r['sync_s']:>8.2f} {r['async_s']:>8.2f} "
              f"{r['speedup']:>5.2f}x {r['identical']}")
    write_report(rows, (load0, os.getloadavg()[0]), seconds)
    print(f"wrote {OUT / 'async-rollout.md'} and .json ({seconds:.0f} s)")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
