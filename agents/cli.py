"""The `groupwise` command: envs, play, rollout, tiny-model, train, bench, serve-retriever."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="groupwise", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("envs", help="list the registered environments")

    p = sub.add_parser("play", help="play an environment yourself in the terminal")
    p.add_argument("env")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-kw", action="append", default=[], metavar="KEY=VALUE", help="env option")

    r = sub.add_parser("rollout", help="collect episodes with a policy, print metrics, write JSONL")
    r.add_argument("--env", required=True)
    r.add_argument("--policy", default="expert",
                   help="expert | random | path to a Hugging Face model folder (causal LM or Qwen2-VL)")
    r.add_argument("--episodes", type=int, default=16, help="total episodes (a multiple of --group-size)")
    r.add_argument("--group-size", type=int, default=1)
    r.add_argument("--out", type=Path, default=None, help="write trajectories here (JSONL)")
    r.add_argument("--seed", type=int, default=0, help="first task seed")
    r.add_argument("--workers", type=int, default=2, help="env worker processes (0 = in process)")
    r.add_argument("--batch-episodes", type=int, default=128, help="episodes played at once")
    r.add_argument("--temperature", type=float, default=1.0)
    r.add_argument("--top-p", type=float, default=1.0)
    r.add_argument("--max-new-tokens", type=int, default=48)
    r.add_argument("--history", type=int, default=2, help="past (observation, action) pairs in the prompt")
    r.add_argument("--image-history", type=int, default=1,
                   help="steps whose images the prompt carries, the current one included (image envs)")
    r.add_argument("--env-kw", action="append", default=[], metavar="KEY=VALUE", help="env option")

    t = sub.add_parser("tiny-model", help="build a tiny random-weight model with a tokenizer trained on env text")
    t.add_argument("--env", default="sokoban")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--history", type=int, default=2)

    sub.add_parser("train", help="train a policy (run `groupwise train --help` for its options)",
                   add_help=False)

    sub.add_parser("bench", help="compare algorithms on an env over seeds (run `groupwise bench --help`)",
                   add_help=False)

    sub.add_parser("serve-retriever", help="serve BM25 or dense retrieval over a JSONL corpus (POST /retrieve)",
                   add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        from algos.train import main as train_main

        return train_main(rest)
    if args.command == "bench":
        from algos.bench import main as bench_main

        return bench_main(rest)
    if args.command == "serve-retriever":
        from tools.retrieval import main as serve_main

        return serve_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    commands = {"envs": cmd_envs, "play": cmd_play, "rollout": cmd_rollout, "tiny-model": cmd_tiny_model}
    return commands[args.command](args)


def parse_kv(items: Sequence[str]) -> dict[str, Any]:
    """`["dim_room=[7,7]", "num_boxes=2"]` -> {"dim_room": [7, 7], "num_boxes": 2} (YAML values)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_envs(args: argparse.Namespace) -> int:
    import envs

    items = envs.list_envs()
    width = max(map(len, items), default=0)
    for env_id, desc in items.items():
        print(f"{env_id:<{width}}  {desc}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    import envs

    env = envs.make(args.env, **parse_kv(args.env_kw))
    obs, info = env.reset(seed=args.seed)
    print(getattr(env, "instructions", ""))
    total, steps = 0.0, 0
    while True:
        print("\n" + obs["text"])
        if info.get("admissible_actions"):
            print("actions:", ", ".join(info["admissible_actions"]))
        try:
            action = input("action (q to quit, ? for the expert's move)> ").strip()
        except EOFError:
            break
        if action == "q":
            break
        if action == "?":
            try:
                print("expert:", env.expert_action())
            except NotImplementedError as exc:
                print(exc)
            continue
        obs, reward, terminated, truncated, info = env.step(action)
        total, steps = total + reward, steps + 1
        print(f"reward {reward:+.2f}  total {total:+.2f}  valid {info.get('valid_action')}")
        if terminated or truncated:
            print("\n" + obs["text"])
            print(f"episode over after {steps} steps: {'won' if info.get('won') else 'lost'}, return {total:+.2f}")
            break
    env.close()
    return 0


def make_policy(spec: str, env_id: str, seed: int = 0) -> Any:
    """`expert`, `random`, or a local model folder (loaded with the hf backend)."""
    from envs.registry import spec as env_spec

    fmt = getattr(env_spec(env_id).load(), "action_format", None)
    if spec == "expert":
        from agents.simple import ExpertPolicy

        return ExpertPolicy(fmt, seed=seed)
    if spec == "random":
        from agents.simple import RandomPolicy

        return RandomPolicy(fmt, seed=seed)
    from agents.hf import HFPolicy

    return HFPolicy(spec)


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from agents.tiny import ensure_tiny_model, env_corpus

    path = ensure_tiny_model(args.out, env_corpus(args.env, args.history))
    print(f"tiny model for {args.env}: {path}")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from agents.policy import SamplingParams
    from agents.prompts import PromptBuilder
    from agents.records import write_jsonl
    from agents.rollout import collect, rollout_metrics
    from envs import EnvPool

    if args.group_size < 1 or args.episodes < 1 or args.episodes % args.group_size:
        raise SystemExit(f"error: --episodes ({args.episodes}) must be a positive multiple of "
                         f"--group-size ({args.group_size})")
    env_kwargs = parse_kv(args.env_kw)
    policy = make_policy(args.policy, args.env, args.seed)
    prompt = PromptBuilder.for_env(args.env, history_length=args.history, image_history=args.image_history)
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    n_tasks = args.episodes // args.group_size
    tasks_per_batch = max(1, args.batch_episodes // args.group_size)
    seeds = list(range(args.seed, args.seed + n_tasks))
    trajs, totals = [], {"generation": 0.0, "env": 0.0}
    tokens, wall = 0.0, 0.0
    from tqdm.auto import tqdm

    with EnvPool(args.env, num_envs=min(n_tasks, tasks_per_batch) * args.group_size,
                 num_workers=args.workers, env_kwargs=env_kwargs) as pool, \
            tqdm(total=args.episodes, desc=f"rollout {args.env}", unit="ep") as bar:
        for start in range(0, n_tasks, tasks_per_batch):
            batch = seeds[start:start + tasks_per_batch]
            ro = collect(pool, policy, batch, args.group_size, sampling, prompt, first_group_id=start)
            trajs += ro.trajectories
            tokens += ro.metrics["tokens_generated"]
            wall += ro.metrics["time_total"]
            totals["generation"] += ro.metrics["time_generation"]
            totals["env"] += ro.metrics["time_env"]
            bar.update(len(ro.trajectories))
    metrics = rollout_metrics(trajs, int(tokens), wall, totals)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=2))
    if args.out:
        write_jsonl(trajs, args.out)
        print(f"wrote {len(trajs)} trajectories to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
